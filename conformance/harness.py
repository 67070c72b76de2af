"""What every conformance test uses: skip unsupported cells, call an op on a backend
with NumPy in / NumPy out, call the reference, and check the result against the
contract of (op, format) with a failure message that explains itself.

A test looks like::

    @pytest.mark.op("encode_float")
    @pytest.mark.parametrize("fmt", FLOAT_FORMATS)
    @given(x=strategies.float32_arrays())
    def test_encode_float(backend, fmt, x):
        require(backend, "encode_float", fmt)
        check("encode_float", fmt, call(backend, "encode_float", x, fmt),
              ref("encode_float", x, fmt), backend=backend, inputs={"x": x})

``backend`` is parametrized by the plugin from ``--backend`` (default: reference);
the ``op`` marker and the ``fmt`` parameter place the test in the matrix.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import tempfile
from dataclasses import fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from accel.dispatch import dispatched
from accel.protocol import supports
from accel.reference import reference_function
from conformance.contracts import contract_for

__all__ = ["require", "call", "ref", "check", "check_refused", "check_like_reference", "repro_line", "NOT_IMPLEMENTED"]

NOT_IMPLEMENTED = "not implemented"


def require(backend: Any, op: str, fmt: str | None = None, **constraints: Any) -> None:
    """Skip (reported as "not implemented") unless ``backend`` declares ``op``/``fmt``.

    Keyword constraints (e.g. ``blocksize=64``) are checked against the capability's
    ``constraints`` mapping when it lists allowed values under the plural key
    (``"blocksizes"``).
    """
    if not supports(backend, op, fmt):
        pytest.skip(f"{NOT_IMPLEMENTED}: {backend.name} {op}[{fmt}]")
    cap = backend.capabilities()[op]
    for key, value in constraints.items():
        allowed = cap.constraints.get(key + "s")
        if allowed is not None and value not in allowed:
            pytest.skip(f"{NOT_IMPLEMENTED}: {backend.name} {op}[{fmt}] with {key}={value}")


def _to_numpy(backend: Any, x: Any) -> Any:
    if isinstance(x, tuple):
        return tuple(_to_numpy(backend, v) for v in x)
    if isinstance(x, list):
        return [_to_numpy(backend, v) for v in x]
    if is_dataclass(x) and not isinstance(x, type):
        return replace(x, **{f.name: _to_numpy(backend, getattr(x, f.name)) for f in fields(x) if f.init})
    if x is None or isinstance(x, (int, float, str, bool)):
        return x
    return np.asarray(backend.to_numpy(x))


def call(backend: Any, op: str, *args: Any, **kwargs: Any) -> Any:
    """Run ``op`` on ``backend`` through the dispatcher (:mod:`accel.dispatch`: the
    reference's argument preparation, then the backend's kernel, arrays converted with
    ``asarray``), exactly as a user's call; NumPy results out (converted with
    ``to_numpy``). Inputs are checked unchanged."""
    snapshot = [a.copy() for a in args if isinstance(a, np.ndarray)]
    out = dispatched(backend).call(op, *args, **kwargs)
    after = [a for a in args if isinstance(a, np.ndarray)]
    for before, now in zip(snapshot, after):
        if before.tobytes() != now.tobytes():
            raise AssertionError(f"{backend.name}.{op} mutated its input array")
    return _to_numpy(backend, out)


def ref(op: str, *args: Any, **kwargs: Any) -> Any:
    """The reference result of ``op`` (refquant's function from OP_SPECS)."""
    return reference_function(op)(*args, **kwargs)


#: Arrays up to this many elements are written into a repro line; larger ones (and arrays that
#: have no exact literal: NaN, inf, ml_dtypes types) go into an .npz file the line loads.
INLINE_ELEMENTS = 16


def repro_dir() -> Path:
    """Where repro inputs are saved: ``$REFQUANT_REPRO_DIR``, else ``<tmp>/refquant-repro``."""
    return Path(os.environ.get("REFQUANT_REPRO_DIR") or Path(tempfile.gettempdir()) / "refquant-repro")


def _inline(value: Any) -> str | None:
    """A Python literal that rebuilds ``value`` exactly, or None if it has none."""
    if value is None or isinstance(value, (bool, int, str)):
        return repr(value)
    if isinstance(value, float):
        return repr(value) if np.isfinite(value) else f"float({str(value)!r})"
    if isinstance(value, tuple) and all(_inline(v) is not None for v in value):
        return "(" + "".join(f"{_inline(v)}, " for v in value).rstrip(" ") + ")" if value else "()"
    if isinstance(value, (np.generic, np.ndarray)) and (
            value.dtype.kind not in "biuf" or value.dtype.type.__module__ != "numpy"  # e.g. ml_dtypes.bfloat16
            or (value.dtype.kind == "f" and not np.isfinite(value).all())):
        return None
    if isinstance(value, np.generic):  # the scalar type's own name: np.float32, np.bool_ / np.bool
        return f"np.{type(value).__name__}({value.item()!r})"
    if isinstance(value, np.ndarray) and value.size == 0:
        return f"np.empty({value.shape!r}, dtype={str(value.dtype)!r})"
    if isinstance(value, np.ndarray) and value.size <= INLINE_ELEMENTS:
        return f"np.array({value.tolist()!r}, dtype={str(value.dtype)!r})"
    return None


def repro_line(backend: Any, op: str, inputs: dict[str, Any]) -> str:
    """A line of Python that reruns ``op`` on ``backend`` with ``inputs`` (keyword arguments
    named as in the op's signature), runnable as printed: values without an exact literal are
    saved to an ``.npz`` file in :func:`repro_dir` that the line loads."""
    from accel.registry import spec_of

    spec = spec_of(backend)
    note = ""
    if spec is None:  # not loaded by accel.get_backend: its name may not resolve
        spec = backend.name
        note = f"  # {spec!r}: the backend's name; give its module:factory if it is not registered"
    literals, saved = {}, {}
    for key, value in inputs.items():
        text = _inline(value)
        if text is None:
            if isinstance(value, np.ndarray):
                saved[key] = value
            else:  # a parameter object, pickled in a 0-d object array
                saved[key] = np.empty((), dtype=object)
                saved[key][()] = value
            text = f"d[{key!r}]" if isinstance(value, np.ndarray) else f"d[{key!r}][()]"
        literals[key] = text
    prefix = "import numpy as np, accel; "
    if saved:
        digest = hashlib.sha1(repr(sorted((k, _fingerprint(v)) for k, v in saved.items())).encode()).hexdigest()[:12]
        path = repro_dir() / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', spec)}-{op}-{digest}.npz"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **saved)
        prefix += f"d = np.load({str(path)!r}, allow_pickle=True); "
    # the op's parameter names as keywords; other keys (arg0, arg1 ...) positional, in order
    names = inspect.signature(reference_function(op)).parameters
    args = ", ".join([v for k, v in literals.items() if k not in names]
                     + [f"{k}={v}" for k, v in literals.items() if k in names])
    return f"{prefix}print(accel.get_backend({spec!r}).{op}({args})){note}"


def _fingerprint(value: Any) -> str:
    if isinstance(value, np.ndarray) and value.dtype != object:
        return hashlib.sha1(value.tobytes() + str((value.shape, value.dtype)).encode()).hexdigest()
    return repr(value)


def check(op: str, fmt: str | None, got: Any, expected: Any, *, backend: Any,
          inputs: dict[str, Any] | None = None, **context: Any) -> None:
    """Assert ``got`` satisfies the contract of (op, fmt) against ``expected``.

    The failure message names the backend, op, format and contract, describes the
    mismatch, and gives a reproduction snippet built from ``inputs``.
    """
    contract = contract_for(op, fmt, backend)
    problem = contract.check(got, expected, **context)
    if problem is None:
        return
    repro = ""
    if inputs:
        try:
            repro = f"\nrepro: {repro_line(backend, op, inputs)}"
        except Exception as exc:  # noqa: BLE001 - the finding above matters more than its repro line
            repro = f"\n(no repro line: {type(exc).__name__}: {exc})"
    raise AssertionError(f"[{backend.name}] {op}[{fmt}] violates {contract!r}: {problem}{repro}")


def _refusal(op: str, args: tuple, kwargs: dict) -> BaseException | None:
    try:
        ref(op, *args, **kwargs)
    except (ValueError, TypeError) as exc:
        return exc
    return None


def check_refused(backend: Any, op: str, fmt: str | None, *args: Any, **kwargs: Any) -> None:
    """Assert ``backend`` refuses input the reference refuses, with the same kind of error
    (ValueError or TypeError), and nothing else (no crash, no result, no other error)."""
    expected = _refusal(op, args, kwargs)
    assert expected is not None, f"the reference accepts this input of {op}; the strategy must draw refused input"
    kind = ValueError if isinstance(expected, ValueError) else TypeError
    try:
        call(backend, op, *args, **kwargs)
    except kind:
        return
    except Exception as exc:  # noqa: BLE001 - any other failure is the finding
        raise AssertionError(f"[{backend.name}] {op}[{fmt}] raised {type(exc).__name__}: {exc} where the reference "
                             f"refuses the input with {type(expected).__name__}: {expected}") from exc
    raise AssertionError(f"[{backend.name}] {op}[{fmt}] returned a result for input the reference refuses "
                         f"({type(expected).__name__}: {expected})")


def check_like_reference(backend: Any, op: str, fmt: str | None, *args: Any, **kwargs: Any) -> None:
    """Refused like the reference when it refuses, else held to the op's contract."""
    if _refusal(op, args, kwargs) is not None:
        check_refused(backend, op, fmt, *args, **kwargs)
        return
    check(op, fmt, call(backend, op, *args, **kwargs), ref(op, *args, **kwargs), backend=backend,
          inputs={f"arg{i}": a for i, a in enumerate(args)} | kwargs)
