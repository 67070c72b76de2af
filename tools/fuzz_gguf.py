"""Coverage-guided fuzzing of refquant's .gguf and imatrix readers with atheris (not run in CI).

Every input must either parse or raise ``refquant.errors.GGUFError``; any other exception
is a finding, and atheris saves the input that caused it. A file that parses is written
back and must parse to the same metadata and tensor bytes.

Usage::

    pip install atheris
    python tools/fuzz_gguf.py tests/golden/gguf_files -max_total_time=600        # .gguf reader
    python tools/fuzz_gguf.py --imatrix-dat CORPUS_DIR -max_total_time=600       # legacy .dat reader

The committed seeds (tests/golden/gguf_files/*.gguf) are a good starting corpus; keep any
new corpus out of the repository (only a crashing input belongs in a test, minimized).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def _gguf_one_input(data: bytes) -> None:
    from refquant.errors import GGUFError
    from refquant.io import parse, write

    try:
        f = parse(data)
    except GGUFError:
        return
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "back.gguf"
        try:
            write(path, f.tensors, f.metadata)
        except ValueError:
            return  # accepted by the reader, refused by the writer (e.g. a 64-byte tensor name)
        g = parse(path.read_bytes())
    assert g.metadata == f.metadata
    assert [(t.name, t.qtype, t.shape, t.data.tobytes()) for t in g.tensors.values()] == \
           [(t.name, t.qtype, t.shape, t.data.tobytes()) for t in f.tensors.values()]


def _dat_one_input(data: bytes) -> None:
    import numpy as np

    from refquant.errors import GGUFError
    from refquant.io.imatrix import _read_dat

    try:
        im = _read_dat(data, 512)
    except GGUFError:
        return
    for e in im.entries.values():
        assert np.isfinite(e.importance()).all()


def main() -> None:
    import atheris

    argv = list(sys.argv)
    target = _gguf_one_input
    if "--imatrix-dat" in argv:
        argv.remove("--imatrix-dat")
        target = _dat_one_input
    with atheris.instrument_imports():
        import refquant.io  # noqa: F401
    atheris.Setup(argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
