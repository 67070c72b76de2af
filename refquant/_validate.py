"""Parameter checks shared by every public function.

Each check raises ``ValueError`` / ``TypeError`` whose message names the parameter,
the offending value and what is allowed, so errors read the same everywhere.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

__all__: list[str] = []  # internal module


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``allowed``, else raise ValueError."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; allowed: {', '.join(map(repr, allowed))}")
    return value


def normalize_name(value: str) -> str:
    """The lookup key of a format or option name: surrounding spaces removed, lowercase.
    Every name refquant takes (format, quant type, codebook, rule ...) is looked up by
    this one function, so ``"NF4"``, ``" Q4_K "`` and ``"nf4"`` name the same thing."""
    return value.strip().lower()


def check_name(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return the name in ``allowed`` that ``value`` spells, ignoring case and surrounding
    spaces (names are case-insensitive: ``"NF4"`` is ``"nf4"``); else raise.

    Raises
    ------
    TypeError
        ``value`` is not a string.
    ValueError
        ``value`` names none of ``allowed``.
    """
    allowed = tuple(allowed)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {', '.join(map(repr, allowed))}; got {value!r} "
                        f"({type(value).__name__})")
    by_key = {normalize_name(a): a for a in allowed}
    try:
        return by_key[normalize_name(value)]
    except KeyError:
        raise ValueError(f"{name}={value!r} is not supported; allowed (case-insensitive): "
                         f"{', '.join(map(repr, allowed))}") from None


def check_int(name: str, value: Any, *, min: int | None = None, max: int | None = None) -> int:
    """Return ``value`` as a Python int, checking type and the inclusive bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    value = int(value)
    if min is not None and value < min:
        raise ValueError(f"{name}={value} is out of range; it must be >= {min}" + (f" and <= {max}" if max is not None else ""))
    if max is not None and value > max:
        raise ValueError(f"{name}={value} is out of range; it must be <= {max}" + (f" and >= {min}" if min is not None else ""))
    return value


def check_power_of_two(name: str, value: Any, *, min: int, max: int) -> int:
    """Return ``value`` if it is a power of two in [min, max], else raise."""
    value = check_int(name, value, min=min, max=max)
    if value & (value - 1):
        raise ValueError(f"{name}={value} must be a power of two between {min} and {max}")
    return value


def check_float(name: str, value: Any, *, min: float | None = None, max: float | None = None,
                min_inclusive: bool = True, max_inclusive: bool = True) -> float:
    """Return ``value`` as a finite Python float within the bounds."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name}={value} must be finite")
    if min is not None and (value < min or (value == min and not min_inclusive)):
        raise ValueError(f"{name}={value} must be {'>=' if min_inclusive else '>'} {min}")
    if max is not None and (value > max or (value == max and not max_inclusive)):
        raise ValueError(f"{name}={value} must be {'<=' if max_inclusive else '<'} {max}")
    return value


def _from_torch(name: str, x: Any) -> np.ndarray:
    """A CPU torch.Tensor as the NumPy array of its dtype (bfloat16 as ml_dtypes.bfloat16,
    bit for bit, which NumPy's own conversion refuses); a TypeError naming the fix for a
    tensor that needs a decision first (autograd, device)."""
    if getattr(x, "requires_grad", False):
        raise TypeError(f"{name} is a torch.Tensor that requires grad; refquant takes NumPy arrays: pass "
                        f"{name}.detach() (CPU tensors are converted, or use .numpy())")
    device = getattr(getattr(x, "device", None), "type", "cpu")
    if device != "cpu":
        raise TypeError(f"{name} is a torch.Tensor on {x.device}; refquant runs on NumPy arrays in host memory: "
                        f"pass {name}.cpu()")
    if str(x.dtype) == "torch.bfloat16":
        import ml_dtypes
        import torch

        return x.contiguous().view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return x.numpy()


def _is_torch_tensor(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "requires_grad")


def as_float_array(name: str, x: Any, *, dtypes: tuple[type, ...] = (np.float32, np.float64),
                   allow_nan: bool = True, min_ndim: int = 0) -> np.ndarray:
    """Return ``x`` as a NumPy array of one of ``dtypes`` without copying when possible.

    Python floats / lists are converted to float32 if float32 is allowed and float64 is
    not. A CPU ``torch.Tensor`` is taken as the array of its own dtype (so a float64
    tensor is refused where a float64 array is). Integer, boolean, complex or object
    input raises TypeError: quantizers take real floats. The result must never be
    written to (callers do not mutate their inputs).
    """
    if _is_torch_tensor(x):
        x = _from_torch(name, x)
    if isinstance(x, np.ndarray):
        arr = x
    else:
        arr = np.asarray(x)
        if arr.dtype.kind in "iub" or arr.dtype == object:
            raise TypeError(f"{name} must be a floating-point array ({', '.join(np.dtype(d).name for d in dtypes)}), got dtype {arr.dtype}")
        if arr.dtype.kind == "f" and arr.dtype not in tuple(np.dtype(d) for d in dtypes) and np.dtype(np.float32) in tuple(np.dtype(d) for d in dtypes):
            arr = arr.astype(np.float32)
    if arr.dtype not in tuple(np.dtype(d) for d in dtypes):
        fix = (f"; cast it with {name}.astype(np.float32)" if arr.dtype.kind == "f" and np.dtype(np.float32) in
               tuple(np.dtype(d) for d in dtypes) else "")
        raise TypeError(f"{name} must be a floating-point array of dtype {' or '.join(np.dtype(d).name for d in dtypes)}, "
                        f"got dtype {arr.dtype}{fix}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    if not allow_nan and arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf, which this operation does not define")
    return arr


def as_int_array(name: str, x: Any, *, min_ndim: int = 0) -> np.ndarray:
    """Return ``x`` as an integer NumPy array (any width), else raise TypeError."""
    arr = np.asarray(_from_torch(name, x) if _is_torch_tensor(x) else x)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {arr.shape}")
    return arr


def flatten_leading(arr: np.ndarray) -> np.ndarray:
    """View an (..., n) array as (rows, n), rows = prod(leading axes).

    Unlike ``arr.reshape(-1, n)`` this is defined when ``n == 0`` (NumPy cannot infer the
    ``-1`` of an empty array), so zero-width inputs get their defined empty results.
    """
    return arr.reshape(int(np.prod(arr.shape[:-1], dtype=np.int64)), arr.shape[-1])
