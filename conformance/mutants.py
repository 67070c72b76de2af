"""Deliberately broken backends: proof that the conformance suite catches real bugs.

Each mutant is the reference backend with ONE op replaced by a plausible wrong
implementation, modelled on bugs that shipped in real quantization code.
``tests/meta/test_mutants.py`` runs the suite against each mutant (as
``--backend conformance.mutants:<factory>``) and asserts that it fails.

Area-specific mutants live in ``conformance/mutants_<area>.py`` modules, each with a
``MUTANTS`` dict of name -> zero-argument factory; :func:`all_mutants` merges them.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import replace
from typing import Any, Callable

import numpy as np

from accel.protocol import OpCapability
from accel.reference import ReferenceBackend

__all__ = ["MutantBackend", "MUTANTS", "all_mutants", "target_of"]


class MutantBackend(ReferenceBackend):
    """The reference backend with some ops overridden.

    Parameters
    ----------
    name : str
        Mutant name (shown in the matrix as ``mutant-<name>``).
    overrides : dict of op name -> callable
        Replacement implementations, same signature as the reference op.
    """

    def __init__(self, name: str, overrides: dict[str, Callable[..., Any]]):
        self.name = f"mutant-{name}"
        self._overrides = overrides

    def capabilities(self) -> dict[str, OpCapability]:
        """The reference's, less ``out=`` on the overridden ops: a replacement is written as
        the plain op (its bug is in the values), so the dispatcher allocates and copies for it."""
        caps = super().capabilities()
        return {op: replace(cap, out=False) if op in self._overrides else cap for op, cap in caps.items()}

    def __getattr__(self, op: str) -> Callable[..., Any]:
        overrides = self.__dict__.get("_overrides", {})
        if op in overrides:
            return overrides[op]
        return super().__getattr__(op)


def _ref(op: str) -> Callable[..., Any]:
    return getattr(ReferenceBackend(), op)


# --- foundation mutants (issue 3) -------------------------------------------------


def bf16_truncation() -> MutantBackend:
    """bf16 by dropping the low 16 bits (round toward zero) instead of round-to-nearest-even."""
    encode = _ref("encode_float")

    def encode_float(x: Any, fmt: str, **kw: Any) -> np.ndarray:
        if fmt in ("bfloat16", "bf16"):
            x32 = np.asarray(x, dtype=np.float32)
            bits = (x32.view(np.uint32) >> 16).astype(np.uint16)
            nan = np.isnan(x32)
            return np.where(nan, encode(x32, fmt, **kw), bits).astype(np.uint16)
        return encode(x, fmt, **kw)

    return MutantBackend("bf16_truncation", {"encode_float": encode_float})


def fp16_flush_subnormals() -> MutantBackend:
    """fp16 that flushes subnormal results to signed zero (a DAZ/FTZ build)."""
    encode = _ref("encode_float")

    def encode_float(x: Any, fmt: str, **kw: Any) -> np.ndarray:
        bits = encode(x, fmt, **kw)
        if fmt in ("float16", "fp16"):
            subnormal = ((bits & 0x7C00) == 0) & ((bits & 0x03FF) != 0)
            bits = np.where(subnormal, bits & 0x8000, bits).astype(np.uint16)
        return bits

    return MutantBackend("fp16_flush_subnormals", {"encode_float": encode_float})


def zero_point_off_by_one() -> MutantBackend:
    """Asymmetric quantize that adds zero_point + 1 (the GPTQ v1 qzeros confusion)."""
    quantize = _ref("quantize_affine")

    def quantize_affine(x: Any, params: Any, **kw: Any) -> np.ndarray:
        q = quantize(x, params, **kw)
        if getattr(params, "zero_point", None) is None:
            return q
        shifted = np.clip(q.astype(np.int64) + 1, params.qmin, params.qmax)
        return shifted.astype(q.dtype)

    return MutantBackend("zero_point_off_by_one", {"quantize_affine": quantize_affine})


def swapped_nibbles() -> MutantBackend:
    """4-bit packing with the two nibbles of each byte swapped."""
    pack = _ref("pack")

    def pack_(codes: Any, bits: int, *args: Any, **kw: Any) -> np.ndarray:
        out = pack(codes, bits, *args, **kw)
        if bits == 4 and out.dtype == np.uint8:
            out = ((out >> 4) | (out << 4)).astype(np.uint8)
        return out

    return MutantBackend("swapped_nibbles", {"pack": pack_})


def q8_0_half_even() -> MutantBackend:
    """GGUF Q8_0 codes rounded half-to-even (``np.rint``) where ggml uses C ``roundf``
    (half away from zero): the classic NumPy-port bug."""
    quantize = _ref("gguf_quantize")

    def gguf_quantize(x: Any, qtype: str, imatrix: Any = None) -> np.ndarray:
        out = quantize(x, qtype, imatrix)
        if str(qtype).lower() != "q8_0":
            return out
        xf = np.asarray(x, np.float32).reshape(-1, 32)                    # (n_blocks, 32)
        amax = np.max(np.abs(xf), axis=1)
        d = amax / np.float32(127)
        with np.errstate(divide="ignore"):
            inv = np.where(d != 0, np.float32(1) / d, np.float32(0)).astype(np.float32)
        qs = np.rint(xf * inv[:, None]).astype(np.int8)                    # the bug: ties to even
        blocks = out.reshape(-1, 34).copy()
        blocks[:, 2:] = qs.view(np.uint8)
        return blocks.reshape(out.shape)

    return MutantBackend("q8_0_half_even", {"gguf_quantize": gguf_quantize})


MUTANTS: dict[str, Callable[[], MutantBackend]] = {
    "q8_0_half_even": q8_0_half_even,
    "bf16_truncation": bf16_truncation,
    "fp16_flush_subnormals": fp16_flush_subnormals,
    "zero_point_off_by_one": zero_point_off_by_one,
    "swapped_nibbles": swapped_nibbles,
}


def all_mutants() -> dict[str, Callable[[], MutantBackend]]:
    """Every mutant: the foundation ones here plus ``conformance.mutants_*.MUTANTS``."""
    found = dict(MUTANTS)
    import conformance

    for info in pkgutil.iter_modules(conformance.__path__):
        if info.name.startswith("mutants_"):
            module = importlib.import_module(f"conformance.{info.name}")
            for name, factory in getattr(module, "MUTANTS", {}).items():
                if name in found:
                    raise RuntimeError(f"duplicate mutant name {name!r} in conformance.{info.name}")
                found[name] = factory
    return found


def target_of(factory: Callable[[], Any]) -> str:
    """The ``module:factory`` string that loads this mutant as a backend."""
    return f"{factory.__module__}:{factory.__name__}"
