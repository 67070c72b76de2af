"""``refquant quantize SRC --to RECIPE --out DST [--workers N | --dask ADDRESS] [--backend numba]``."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["register"]


def backend_gguf_quantize(backend: str, x: Any, qtype: str, imatrix: Any = None) -> Any:
    """``accel.get_backend(backend).gguf_quantize(x, qtype, imatrix)`` (module level: picklable with
    functools.partial)."""
    import accel

    return accel.get_backend(backend).gguf_quantize(x, qtype, imatrix)


def _cmd_quantize(args: argparse.Namespace) -> int:
    import functools

    import numpy as np

    from refquant.checkpoint.quantize import quantize

    quantizer = None
    if args.backend and args.backend != "reference":
        import accel

        accel.get_backend(args.backend)  # fails now, with the reason, if it cannot load
        quantizer = functools.partial(backend_gguf_quantize, args.backend)
    calibration = np.load(args.calib) if args.calib else None

    executor: Any = None
    client: Any = None
    if args.dask:
        try:
            from distributed import Client
        except ImportError as exc:
            raise SystemExit(f"--dask needs dask.distributed: pip install 'refquant[cluster]' ({exc})") from None
        client = Client(args.dask)
        executor = client.get_executor()
    elif args.workers > 1:
        import concurrent.futures as cf

        executor = cf.ProcessPoolExecutor(args.workers)
    try:
        out = quantize(args.src if len(args.src) > 1 else args.src[0], args.out, args.to, executor=executor,
                       restart=args.restart, progress=not args.quiet and None, name=args.name,
                       calibration=calibration, calib_shards=args.calib_shards, gguf_quantizer=quantizer,
                       imatrix=args.imatrix)
    finally:
        if client is not None:
            client.close()
        elif executor is not None:
            executor.shutdown()
    if not args.quiet:
        print(out)
    return 0


def register(subparsers: Any) -> None:
    """Add the ``quantize`` subcommand."""
    from refquant.checkpoint.quantize import RECIPES

    p = subparsers.add_parser("quantize", help="quantize a whole checkpoint to GGUF, or a bitsandbytes / GPTQ / AWQ folder",
                              description="Stream a Hugging Face checkpoint through a recipe into a .gguf file or a "
                                          "quantized Hugging Face folder. Interrupted runs resume from DST.partial.")
    p.add_argument("src", nargs="+", help="model folder, or .safetensors files")
    p.add_argument("--to", required=True, metavar="RECIPE", type=str.lower, choices=RECIPES,
                   help="recipe: " + ", ".join(RECIPES))
    p.add_argument("--out", required=True, help="destination .gguf file or folder")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (default 1: serial)")
    p.add_argument("--dask", metavar="ADDRESS", help="run on a dask.distributed scheduler (tcp://host:8786)")
    p.add_argument("--restart", action="store_true", help="discard an unfinished job instead of resuming it")
    p.add_argument("--name", help="general.name of a GGUF (default: the source folder's name)")
    p.add_argument("--calib", metavar="IDS.npy", help="calibration token ids, int array (samples, seq_len): "
                                                      "required by gptq-4bit-g128 and awq-4bit-g128")
    p.add_argument("--calib-shards", type=int, default=2, help="calibration shards (statistics tasks per block)")
    p.add_argument("--imatrix", metavar="FILE", help="importance matrix (.gguf or legacy .dat) for GGUF recipes")
    p.add_argument("--backend", help="accel backend for GGUF block quantization (e.g. numba; bit-exact)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_quantize)
