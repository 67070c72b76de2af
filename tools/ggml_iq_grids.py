"""Extract ggml's IQ lattice grids from ``ggml-common.h`` into ``refquant/formats/data/ggml_iq_grids.npz``.

The grid-codebook types (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) look their
8- or 4-element groups up in fixed tables of lattice points that ggml selected once and
ships as literals (``GGML_TABLE_BEGIN(uint64_t, iq2xxs_grid, 256)`` ... in
``src/ggml-common.h``). They cannot be derived from a rule, so this script reads them
from the header of a ggml checkout and stores them as data, each entry as its bytes in
memory order (what the C code reads through a ``uint8_t *`` / ``int8_t *`` on a
little-endian machine):

==============  ===========  ===================================================
array           shape        meaning
==============  ===========  ===================================================
iq2xxs_grid     (256, 8)     uint8 magnitudes {8, 25, 43}
iq2xs_grid      (512, 8)     uint8 magnitudes {8, 25, 43}
iq2s_grid       (1024, 8)    uint8 magnitudes {8, 25, 43}
iq3xxs_grid     (256, 4)     uint8 magnitudes {4, 12, ..., 62}
iq3s_grid       (512, 4)     uint8 magnitudes {1, 3, ..., 15}
iq1s_grid       (2048, 8)    int8 values {-1, 0, 1}
==============  ===========  ===================================================

plus ``ggml_commit`` and ``header_sha256`` (of the header read). ``ksigns_iq2xs`` and
``kmask_iq2xs`` are not stored: they follow a rule (refquant.formats.iq_grids derives them
and its tests compare them with the header's).

Usage::

    python tools/ggml_iq_grids.py /path/to/ggml/src/ggml-common.h --commit <sha> [--out PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from pathlib import Path

import numpy as np

GRIDS = {  # name -> (C element type, entries, bytes per entry)
    "iq2xxs_grid": ("uint64_t", 256, 8), "iq2xs_grid": ("uint64_t", 512, 8), "iq2s_grid": ("uint64_t", 1024, 8),
    "iq3xxs_grid": ("uint32_t", 256, 4), "iq3s_grid": ("uint32_t", 512, 4), "iq1s_grid": ("uint64_t", 2048, 8),
}
EXTRA = ("ksigns_iq2xs", "kmask_iq2xs")   # read for the tests' comparison, not stored


def read_table(text: str, name: str) -> list[int]:
    """Integer literals between ``GGML_TABLE_BEGIN(type, name, size)`` and ``GGML_TABLE_END()``."""
    m = re.search(r"GGML_TABLE_BEGIN\(\s*\w+\s*,\s*" + re.escape(name) + r"\s*,[^)]*\)(.*?)GGML_TABLE_END\(\)", text, re.S)
    if m is None:
        raise ValueError(f"table {name} not found")
    return [int(tok, 0) for tok in re.findall(r"0x[0-9a-fA-F]+|\d+", m.group(1))]


def extract(header: Path) -> dict[str, np.ndarray]:
    text = header.read_text()
    out: dict[str, np.ndarray] = {}
    for name, (ctype, n, width) in GRIDS.items():
        values = read_table(text, name)
        if len(values) != n:
            raise ValueError(f"{name}: {len(values)} entries, expected {n}")
        as_int = np.array(values, dtype="<u8" if width == 8 else "<u4")
        raw = as_int.view(np.uint8).reshape(n, width)          # little-endian bytes = memory order
        out[name] = raw.view(np.int8) if name == "iq1s_grid" else raw
    for name in EXTRA:
        out[name] = np.array(read_table(text, name), np.uint8)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("header", type=Path, help="ggml's src/ggml-common.h")
    p.add_argument("--commit", required=True, help="ggml commit the header comes from")
    p.add_argument("--out", type=Path,
                   default=Path(__file__).resolve().parents[1] / "refquant" / "formats" / "data" / "ggml_iq_grids.npz")
    args = p.parse_args(argv)
    tables = extract(args.header)
    digest = hashlib.sha256(args.header.read_bytes()).hexdigest()
    np.savez_compressed(args.out, ggml_commit=np.array(args.commit), header_sha256=np.array(digest),
                        **{k: v for k, v in tables.items() if k in GRIDS})
    print(f"wrote {args.out} ({', '.join(f'{k} {v.shape}' for k, v in tables.items() if k in GRIDS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
