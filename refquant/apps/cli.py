"""The ``refquant`` command line (also ``python -m refquant``).

Subcommands::

    refquant formats                 # every format with its bits per weight
    refquant backends                # registered backends: loaded, or why not
    refquant conformance [...]       # = python -m conformance [...]
    refquant report --model DIR      # quantize a real model with each scheme (refquant.apps.report)
    refquant eval-weights ...        # layer reconstruction error per algorithm (refquant.apps.evaluate)
    refquant quantize SRC --to R --out DST  # whole checkpoint -> GGUF / HF folder (refquant.apps.quantize)

Subcommands that live in their own module register themselves through a
``register(subparsers)`` function, so this file stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
import textwrap
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

# module providing register(subparsers) -> None for a subcommand
_PLUGIN_COMMANDS = ("refquant.apps.report", "refquant.apps.evaluate", "refquant.apps.quantize")


def format_rows() -> tuple[list[tuple[str, str, str, str]], list[str]]:
    """``refquant formats`` as data: rows ``(family, format, aliases, made by)`` of what refquant
    implements, each format once (ggml's ``f32``/``f16``/``bf16``/``f64`` are aliases of the
    float types), and the names ggml defines that refquant does not implement."""
    from refquant import gguf, metrics
    from refquant.formats.mx import MX_FORMATS

    ggml_made = set(gguf.qtypes())
    aliases = {"float64": "f64, fp64", "float32": "f32, fp32", "float16": "f16, fp16", "bfloat16": "bf16"}
    shown = {"f64", "f32", "f16", "bf16"}  # listed under their float names
    rows = [("float (no scale)", "float64", aliases["float64"], "the input type (stored as is)"),
            ("float (no scale)", "float32", aliases["float32"], "the input type (stored as is)")]
    for name in ("float16", "bfloat16", "float8_e4m3fn", "float8_e5m2", "float6_e3m2fn", "float6_e2m3fn",
                 "float4_e2m1fn"):
        rows.append(("float (no scale)", name, aliases.get(name, ""), "refquant.encode_float"))
    for name in ("int8", "int4", "int3", "int2"):
        rows.append(("integer (affine)", name, "", "refquant.quantize (scale per granularity)"))
    for name in metrics.GGUF_BLOCKS:
        if name == "nvfp4":
            rows.append(("ggml block type", name, "", "refquant.gguf.quantize; NVIDIA's two-level "
                         "layout: refquant.formats.nvfp4.nvfp4_quantize"))
        elif name in ggml_made and name not in shown and name not in MX_FORMATS:  # mxfp4: below
            rows.append(("ggml block type", name, "", "refquant.gguf.quantize"))
    for name in MX_FORMATS:
        if name == "mxfp4":
            rows.append(("OCP microscaling", "mxfp4", "", "refquant.formats.mx.mx_quantize; ggml's block "
                         "layout: refquant.gguf.quantize"))
            continue
        rows.append(("OCP microscaling", name, "", "refquant.formats.mx.mx_quantize"))
    rows += [("bitsandbytes", "nf4", "", "refquant.bnb.quantize_4bit"),
             ("bitsandbytes", "fp4", "", "refquant.bnb.quantize_4bit"),
             ("algorithm (defaults)", "gptq", "", "refquant.algorithms.gptq (4-bit, groups of 128)"),
             ("algorithm (defaults)", "awq", "", "refquant.algorithms.awq (4-bit, groups of 128)"),
             ("algorithm (defaults)", "spqr", "", "refquant.algorithms.spqr (3-bit, outliers)")]
    ggml_only = [name for name in metrics.GGUF_BLOCKS if name not in ggml_made and name not in shown]
    return rows, ggml_only


def _cmd_formats(args: argparse.Namespace) -> int:
    from refquant import metrics

    rows, ggml_only = format_rows()
    table = [("family", "format", "bits/weight", "aliases", "made by")]
    table += [(family, name, f"{metrics.bits_per_weight(name):.6g}", alias, made) for family, name, alias, made in rows]
    widths = [max(len(r[i]) for r in table) for i in range(4)]
    print("Implemented by refquant (quantize and dequantize; names are case-insensitive):")
    for r in table:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(r[:4], widths)) + "  " + r[4])
    if ggml_only:
        print()
        print("Defined by ggml but not implemented by refquant (storage cost only, "
              "refquant.metrics.bits_per_weight):")
        for name in ggml_only:
            print(f"  {name:<{widths[1]}}  {metrics.bits_per_weight(name):.6g}")
    return 0


def _cmd_backends(args: argparse.Namespace) -> int:
    import accel

    for name, info in accel.available_backends().items():
        if info.loaded:
            ops = len(info.backend.capabilities())
            print(f"{name:<10} loaded ({info.backend.device}, {ops} ops)  {info.target}")
        else:
            print(f"{name:<10} unavailable: {info.reason}")
    return 0


def _cmd_conformance(args: argparse.Namespace) -> int:
    from conformance.__main__ import main as conformance_main

    return conformance_main(args.rest)


_ROLE = re.compile(r":(?:func|mod|data|class|meth|attr|obj):`~?([^`]+)`")


def plain_text(text: str) -> str:
    """Docstring markup as plain text for ``--help``: ``x`` and :func:`x` become x."""
    return _ROLE.sub(r"\1", text).replace("``", "")


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Subcommand descriptions and option help without reStructuredText markup, with their
    paragraphs kept (``RawDescriptionHelpFormatter``)."""
    for action in parser._actions:
        if action.help:
            action.help = plain_text(action.help)
    if parser.description:
        paragraphs = plain_text(parser.description).strip().split("\n\n")
        # indented paragraphs (formulas) stay as written; the others are refilled
        parser.description = "\n\n".join(p if p.startswith(" ") else textwrap.fill(" ".join(p.split()), 79)
                                          for p in paragraphs)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refquant", description="refquant: reference LLM quantization")
    from refquant import __version__

    parser.add_argument("--version", action="version", version=f"refquant {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("formats", help="list formats and their bits per weight",
                       description="Every format refquant implements, with its bits per weight (scales "
                                   "included), its aliases and the function that makes it; then the types ggml "
                                   "defines that refquant does not implement.")
    p.set_defaults(func=_cmd_formats)
    p = sub.add_parser("backends", help="list backends: loaded, or the reason they are unavailable",
                       description="Every registered backend (built in, or the entry-point group "
                                   "refquant.backends): loaded with its device and number of ops, or why not.")
    p.set_defaults(func=_cmd_backends)
    p = sub.add_parser("conformance", help="run the conformance matrix (same as python -m conformance)",
                       description="Check backends against the reference: refquant conformance --help "
                                   "lists the options.")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for python -m conformance")
    p.set_defaults(func=_cmd_conformance)
    for module_name in _PLUGIN_COMMANDS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        module.register(sub)
    for p in sub.choices.values():
        _plain_help(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:
        # argparse's REMAINDER drops leading options in a subcommand, so hand them over as given.
        from conformance.__main__ import main as conformance_main

        return conformance_main(argv[1:], prog="refquant conformance")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
