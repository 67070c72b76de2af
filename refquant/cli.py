"""The ``refquant`` command line (also ``python -m refquant``).

Subcommands::

    refquant formats                 # every format with its bits per weight
    refquant backends                # registered backends: loaded, or why not
    refquant conformance [...]       # = python -m conformance [...]
    refquant report --model DIR      # quantize a real model with each scheme (refquant.report)
    refquant eval-weights ...        # layer reconstruction error per algorithm (refquant.evaluate)
    refquant quantize SRC --to R --out DST  # whole checkpoint -> GGUF / HF folder (refquant.checkpoint)

Subcommands that live in their own module register themselves through a
``register(subparsers)`` function, so this file stays a thin dispatcher.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

__all__ = ["main", "build_parser"]

# module providing register(subparsers) -> None for a subcommand
_PLUGIN_COMMANDS = ("refquant.report", "refquant.evaluate", "refquant.checkpoint.cli")


def _cmd_formats(args: argparse.Namespace) -> int:
    from refquant import metrics

    names = metrics.known_formats()
    width = max(len(n) for n in names)
    print(f"{'format':<{width}}  bits/weight")
    for name in names:
        print(f"{name:<{width}}  {metrics.bits_per_weight(name):.6g}")
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refquant", description="refquant: reference LLM quantization")
    from refquant import __version__

    parser.add_argument("--version", action="version", version=f"refquant {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("formats", help="list formats and their bits per weight")
    p.set_defaults(func=_cmd_formats)
    p = sub.add_parser("backends", help="list backends: loaded, or the reason they are unavailable")
    p.set_defaults(func=_cmd_backends)
    p = sub.add_parser("conformance", help="run the conformance matrix (same as python -m conformance)")
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["conformance"]:
        # argparse's REMAINDER drops leading options in a subcommand, so hand them over as given.
        from conformance.__main__ import main as conformance_main

        return conformance_main(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
