"""Conformance: ``out=`` of every op that takes it (``OpSpec.out``), on every backend.

For each such op, one small fixed input (the kernels' arithmetic is what the other
conformance files draw; this file checks where the result goes):

* the result is written into the caller's arrays, bit for bit the fresh result, and the
  returned object *is* the caller's array (for a tuple result: each given entry is);
* a refused ``out`` (wrong shape, wrong dtype, not C-contiguous, read-only, sharing
  memory with an input or with another entry, a tuple of the wrong length, an array for
  a result the op allocates itself) raises ValueError or TypeError and leaves every
  array the caller passed unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest

from accel.dispatch import dispatched, prepare_function
from accel.ops import OP_SPECS
from conformance.harness import _to_numpy, ref, require
from refquant.mapping import choose_qparams

_RNG = np.random.default_rng(14)
_F32 = np.float32


def _x(*shape: int) -> np.ndarray:
    return _RNG.standard_normal(shape).astype(_F32)


def _gptq_pack_args() -> tuple:
    codes = _RNG.integers(0, 16, (8, 32)).astype(np.uint8)
    zeros = _RNG.integers(1, 16, (8, 2))
    return codes, zeros, np.abs(_x(8, 2)) + _F32(0.1), np.arange(32) // 16, 4, 1


def _awq_pack_args() -> tuple:
    return (_RNG.integers(0, 16, (8, 32)).astype(np.uint8), _RNG.integers(0, 16, (8, 2)).astype(np.uint8),
            np.abs(_x(8, 2)) + _F32(0.1))


def _from(op: str, build: Callable[[], tuple], pick: Callable[[Any, tuple], tuple]) -> Callable[[], tuple]:
    """Arguments made from the reference result of ``op`` on ``build()``."""
    def make() -> tuple:
        args = build()
        return pick(ref(op, *args), args)
    return make


_PARAMS_X = _x(3, 8)
_AFFINE = choose_qparams(_PARAMS_X)
_BNB_X = _x(256)
_NVFP4_X = _x(2, 32)
_MX_X = _x(2, 64)
_GGUF_X = _x(2, 32)

#: op -> (format-axis value or None, a function building its positional arguments)
EXAMPLES: dict[str, tuple[str | None, Callable[[], tuple]]] = {
    "encode_float": ("float16", lambda: (_x(3, 8), "float16")),
    "decode_float": ("float16", lambda: (_RNG.integers(0, 2**16, (3, 8)).astype(np.uint16), "float16")),
    "codebook_encode": ("nf4", lambda: (_x(3, 8), "nf4")),
    "codebook_decode": ("nf4", lambda: (_RNG.integers(0, 16, (3, 8)).astype(np.uint8), "nf4")),
    "quantize_affine": ("per_tensor", lambda: (_PARAMS_X, _AFFINE)),
    "dequantize_affine": ("per_tensor", lambda: (ref("quantize_affine", _PARAMS_X, _AFFINE), _AFFINE)),
    "pack": ("4bit", lambda: (_RNG.integers(0, 16, (3, 16)).astype(np.uint8), 4)),
    "unpack": ("4bit", lambda: (_RNG.integers(0, 256, (3, 8)).astype(np.uint8), 4, 16)),
    "pack_ternary": (None, lambda: (_RNG.integers(0, 3, (3, 10)).astype(np.uint8),)),
    "unpack_ternary": (None, lambda: (_RNG.integers(0, 243, (3, 2)).astype(np.uint8), 10)),
    "bnb_quantize_4bit": ("nf4", lambda: (_BNB_X, "nf4", 64)),
    "bnb_dequantize_4bit": ("nf4", _from("bnb_quantize_4bit", lambda: (_BNB_X, "nf4", 64),
                                         lambda r, a: (*r, "nf4", 64, (256,)))),
    "bnb_quantize_blockwise": ("dynamic8", lambda: (_BNB_X, 64)),
    "bnb_dequantize_blockwise": ("dynamic8", _from("bnb_quantize_blockwise", lambda: (_BNB_X, 64),
                                                   lambda r, a: (*r, 64, (256,)))),
    "bnb_double_quantize": (None, lambda: (np.abs(_x(300)),)),
    "int8_vectorwise_quant": (None, lambda: (_x(4, 32), 2.0)),
    "int8_vectorwise_dequant": (None, _from("int8_vectorwise_quant", lambda: (_x(4, 32),), lambda r, a: r[:2])),
    "dequantize_int32": (None, lambda: (_RNG.integers(-1000, 1000, (3, 4)).astype(np.int32), np.abs(_x(3)),
                                        np.abs(_x(4)))),
    "gguf_quantize": ("q4_0", lambda: (_GGUF_X, "q4_0")),
    "gguf_dequantize": ("q4_0", _from("gguf_quantize", lambda: (_GGUF_X, "q4_0"),
                                      lambda r, a: (r, "q4_0", (2, 32)))),
    "mx_quantize": ("mxfp8_e4m3", lambda: (_MX_X, "mxfp8_e4m3")),
    "mx_dequantize": ("mxfp8_e4m3", _from("mx_quantize", lambda: (_MX_X, "mxfp8_e4m3"),
                                          lambda r, a: (*r, "mxfp8_e4m3"))),
    "nvfp4_quantize": (None, lambda: (_NVFP4_X,)),
    "nvfp4_dequantize": (None, _from("nvfp4_quantize", lambda: (_NVFP4_X,), lambda r, a: r)),
    "gptq_pack": ("v1_4bit", _gptq_pack_args),
    "gptq_unpack": ("v1_4bit", _from("gptq_pack", _gptq_pack_args, lambda r, a: (*r, 4, 1))),
    "gptq_dequantize": ("v1_4bit", _from("gptq_pack", _gptq_pack_args, lambda r, a: (*r, 4, 1))),
    "awq_pack": (None, _awq_pack_args),
    "awq_unpack": (None, _from("awq_pack", _awq_pack_args, lambda r, a: r[:2])),
    "awq_dequantize": (None, _from("awq_pack", _awq_pack_args, lambda r, a: (*r, 16))),
}

OUT_OPS = tuple(op for op, spec in OP_SPECS.items() if spec.out)


def test_every_out_op_has_an_example_and_a_reference_out():
    import inspect

    from accel.reference import reference_function

    assert set(EXAMPLES) == set(OUT_OPS), "add an example for each OpSpec.out op (and only those)"
    for op in OUT_OPS:
        assert inspect.signature(reference_function(op)).parameters["out"].kind == inspect.Parameter.KEYWORD_ONLY, op


def _sentinel_like(a: np.ndarray) -> np.ndarray:
    """A fresh array of ``a``'s shape and dtype filled with 0xA5 bytes (so a write shows)."""
    out = np.empty(a.shape, a.dtype)
    out.reshape(-1).view(np.uint8)[:] = 0xA5
    return out


def _bad_outs(good: tuple, own: tuple[bool, ...], first_input: np.ndarray | None) -> list[tuple[str, Any, Any]]:
    """(what, out tuple, replacement of the first input or None) for every refusal the
    contract lists; ``good`` holds a valid array per result (None where ``own``: a result
    the op allocates itself)."""
    bad: list[tuple[str, Any, Any]] = []

    def at(i: int, a: Any) -> tuple:
        return good[:i] + (a,) + good[i + 1:]

    for i, g in enumerate(good):
        if g is None:
            continue
        readonly = _sentinel_like(g)
        readonly.flags.writeable = False
        other = np.float64 if g.dtype != np.float64 else np.float32
        bad += [(f"out[{i}] of another shape", at(i, _sentinel_like(np.empty(g.shape + (2,), g.dtype))), None),
                (f"out[{i}] of another dtype", at(i, _sentinel_like(np.empty(g.shape, other))), None),
                (f"out[{i}] read-only", at(i, readonly), None),
                (f"out[{i}] a list", at(i, g.tolist()), None)]
        if g.ndim and g.shape[-1] > 1:
            wide = _sentinel_like(np.empty(g.shape[:-1] + (2 * g.shape[-1],), g.dtype))
            bad.append((f"out[{i}] not C-contiguous", at(i, wide[..., ::2]), None))
        if first_input is not None and g.nbytes and first_input.nbytes:
            buf = np.zeros(max(g.nbytes, first_input.nbytes), np.uint8)
            inp = buf[:first_input.nbytes].view(first_input.dtype).reshape(first_input.shape)
            inp[...] = first_input
            bad.append((f"out[{i}] sharing memory with the input",
                        at(i, buf[:g.nbytes].view(g.dtype).reshape(g.shape)), inp))
    if len(good) == 1:
        return bad
    given = [i for i, g in enumerate(good) if g is not None]
    bad += [("a list of arrays", list(good), None), ("a tuple one entry short", good[:-1], None),
            ("a tuple one entry long", good + (None,), None)]
    bad += [(f"an array at out[{i}], a result the op allocates", at(i, _sentinel_like(np.empty(3, np.int64))), None)
            for i, o in enumerate(own) if o]
    same = [(i, j) for i in given for j in given if i < j and good[i].dtype == good[j].dtype
            and good[i].shape == good[j].shape]
    bad += [(f"out[{i}] and out[{j}] the same array", at(j, good[i]), None) for i, j in same[:1]]
    return bad


@pytest.mark.parametrize("op", [pytest.param(op, marks=pytest.mark.op(op)) for op in EXAMPLES])
def test_out(refquant_backend, op):
    fmt, build = EXAMPLES[op]
    require(refquant_backend, op, fmt)
    args = build()
    backend = dispatched(refquant_backend)
    fresh = _to_numpy(refquant_backend, backend.call(op, *args))
    single = not isinstance(fresh, tuple)
    results = (fresh,) if single else fresh
    allocated = prepare_function(op)(*args).out
    own = tuple(a is None for a in ((allocated,) if single else allocated))
    good = tuple(None if o else _sentinel_like(np.asarray(r)) for o, r in zip(own, results))

    got = backend.call(op, *args, out=good[0] if single else good)
    for i, (g, r) in enumerate(zip(good, results)):
        if g is not None:
            assert (got if single else got[i]) is g, f"{op}: result {i} is not the caller's out array"
            assert g.tobytes() == np.asarray(r).tobytes(), f"{op}: out[{i}] differs from the fresh result"

    first_input = next((a for a in args if isinstance(a, np.ndarray)), None)
    refusals = _bad_outs(good, own, first_input) + ([("a tuple", good, None)] if single else [])
    for what, out, inp in refusals:
        kept = [g.copy() for g in good if g is not None]
        with pytest.raises((ValueError, TypeError)):
            backend.call(op, *(args if inp is None else (inp,) + args[1:]),
                         out=out[0] if single and what != "a tuple" else out)
        for before, g in zip(kept, [g for g in good if g is not None]):
            assert before.tobytes() == g.tobytes(), f"{op}: refused out ({what}) changed a caller's array"
        if inp is not None:
            assert inp.tobytes() == first_input.tobytes(), f"{op}: refused out ({what}) changed the input"
        for a in (out if isinstance(out, (tuple, list)) else ()):
            if isinstance(a, np.ndarray) and not any(a is g for g in good) and (inp is None or not np.shares_memory(a, inp)):
                assert (np.ascontiguousarray(a).reshape(-1).view(np.uint8) == 0xA5).all(), f"{op}: refused out ({what}) was written"
