"""bitsandbytes ``quant_state`` state-dict layout: a :class:`refquant.bnb.QuantState` as the
tensors ``Linear4bit`` saves, and back to the fields it is made of.

This module knows the keys and the JSON, not the container: :func:`to_state_dict` reads a
QuantState through its attributes and :func:`read_state_dict` returns plain fields, which
:meth:`refquant.bnb.QuantState.from_state_dict` builds the container from (so that the
container saves itself through this layout without the layout depending on it).

bitsandbytes (``functional.QuantState.as_dict(packed=True)``, ``nn.Linear4bit
._save_to_state_dict``) stores a 4-bit weight called ``weight`` as:

========================================  ======================  ================================
key                                       dtype, shape            content
========================================  ======================  ================================
``weight``                                uint8 (ceil(n/2), 1)    packed codes (``Params4bit``)
``weight.absmax``                         float32 (n_blocks,)     per-block absmax, or, when
                                          / uint8 (n_blocks,)     double-quantized, its 8-bit codes
``weight.quant_map``                      float32 (16,)           the code table
``weight.nested_absmax``                  float32 (ceil(nb/256),) second-level absmax (nested only)
``weight.nested_quant_map``               float32 (256,)          the dynamic map (nested only)
``weight.quant_state.bitsandbytes__nf4``  uint8 (len,)            UTF-8 JSON of the non-tensor
                                                                  fields (``__fp4`` for FP4)
========================================  ======================  ================================

The JSON is ``json.dumps`` of, in this order, ``quant_type``, ``blocksize``, ``dtype``
(e.g. ``"float32"``), ``shape`` (list), and when nested ``nested_blocksize``,
``nested_dtype``, ``nested_offset`` (the float32 offset as a Python float), with
json's default separators (``utils.pack_dict_to_tensor``). Writing the same fields in
the same order makes the bytes identical to bitsandbytes' own.

bitsandbytes has no packed form for 8-bit blockwise states (its ``from_dict`` accepts
only nf4/fp4). refquant writes them the same way under ``quant_state.refquant__dynamic8``,
with the codes under ``weight`` in the tensor's shape; bitsandbytes cannot read those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np

from refquant.errors import ValidationError

__all__ = ["to_state_dict", "read_state_dict", "pack_json", "unpack_json", "quant_state_key"]

_SUFFIX = {"nf4": "bitsandbytes__nf4", "fp4": "bitsandbytes__fp4", "dynamic8": "refquant__dynamic8"}


def quant_state_key(name: str, quant_type: str) -> str:
    """The key of the packed JSON tensor, e.g. ``weight.quant_state.bitsandbytes__nf4``.

    Parameters
    ----------
    name : str
        The weight's key; any string.
    quant_type : {"nf4", "fp4", "dynamic8"}
        KeyError otherwise.
    """
    return f"{name}.quant_state.{_SUFFIX[quant_type]}"


def pack_json(fields: Mapping[str, Any]) -> np.ndarray:
    """``fields`` as UTF-8 JSON bytes in a uint8 array (bitsandbytes ``pack_dict_to_tensor``).

    Parameters
    ----------
    fields : mapping of str -> JSON-serializable value
    """
    return np.frombuffer(json.dumps(dict(fields)).encode("utf-8"), dtype=np.uint8).copy()


def unpack_json(data: np.ndarray) -> dict[str, Any]:
    """Inverse of :func:`pack_json` (``unpack_tensor_to_dict``).

    Parameters
    ----------
    data : ndarray of uint8, any shape
        UTF-8 JSON of an object (read in C order).
    """
    return json.loads(np.asarray(data, dtype=np.uint8).tobytes().decode("utf-8"))


def to_state_dict(q: Any, name: str = "weight") -> dict[str, np.ndarray]:
    """The tensors bitsandbytes would save for ``q`` under ``name``.

    Parameters
    ----------
    q : refquant.bnb.QuantState
        Validated first (an inconsistent state is never written); read through its
        attributes (``packed``, ``absmax``, ``shape``, ``quant_type``, ``blocksize``,
        ``code``, ``dtype``, ``nested``).
    name : str
        The weight's key; every other key starts with ``name + "."``.

    Returns
    -------
    dict of str -> ndarray
    """
    q.validate()
    fields: dict[str, Any] = {"quant_type": q.quant_type, "blocksize": int(q.blocksize), "dtype": q.dtype,
                              "shape": [int(d) for d in q.shape]}
    if q.quant_type == "dynamic8":
        payload = q.packed.reshape(q.shape)
    else:
        payload = q.packed.reshape(-1, 1)
    out = {name: payload, f"{name}.quant_map": q.code}
    if q.nested is None:
        out[f"{name}.absmax"] = q.absmax
    else:
        out[f"{name}.absmax"] = q.nested.codes
        out[f"{name}.nested_absmax"] = q.nested.absmax
        out[f"{name}.nested_quant_map"] = q.nested.code
        fields.update(nested_blocksize=int(q.nested.blocksize), nested_dtype=q.nested.dtype,
                      nested_offset=float(q.nested.offset))
    out[quant_state_key(name, q.quant_type)] = pack_json(fields)
    return {k: np.ascontiguousarray(v) for k, v in out.items()}


def _get(tensors: Mapping[str, np.ndarray], key: str) -> np.ndarray:
    try:
        return np.asarray(tensors[key])
    except KeyError:
        raise ValidationError(f"bitsandbytes state dict: missing key {key!r}") from None


def read_state_dict(tensors: Mapping[str, np.ndarray], name: str = "weight") -> dict[str, Any]:
    """The fields of the :class:`refquant.bnb.QuantState` stored under ``name`` in a
    (bitsandbytes or refquant) state dict, checked for the keys and the JSON only
    (:meth:`refquant.bnb.QuantState.from_state_dict` builds and validates the container).

    Parameters
    ----------
    tensors : mapping of str -> array
        The state dict (any other keys are ignored).
    name : str
        The weight's key.

    Returns
    -------
    dict
        ``packed``, ``shape``, ``quant_type``, ``blocksize``, ``code``, ``dtype`` as stored;
        ``absmax`` the stored float32 absmax, or None when double-quantized; ``nested`` None,
        or the fields of :class:`refquant.bnb.NestedAbsmax` (``codes``, ``absmax``,
        ``offset``, ``blocksize``, ``code``, ``dtype``).

    Raises
    ------
    KeyError
        No ``name`` tensor or no quant_state entry for it.
    refquant.errors.ValidationError
        Missing companion tensors, unreadable JSON, or JSON fields missing or disagreeing
        with the key.
    """
    keys = [k for k in tensors if k.startswith(f"{name}.quant_state.")]
    if name not in tensors or not keys:
        raise KeyError(f"no bitsandbytes 4-bit tensor {name!r} (with a {name}.quant_state.* entry) in the state dict")
    if len(keys) != 1 or keys[0].rsplit(".", 1)[-1] not in _SUFFIX.values():
        raise ValidationError(f"expected exactly one of {[f'{name}.quant_state.{s}' for s in _SUFFIX.values()]}, found {keys}")
    try:
        fields = unpack_json(tensors[keys[0]])
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValidationError(f"{keys[0]} is not UTF-8 JSON: {exc}") from None
    required = ("quant_type", "blocksize", "dtype", "shape")
    missing = [k for k in required if k not in fields]
    if missing:
        raise ValidationError(f"{keys[0]} lacks {missing}")
    quant_type = fields["quant_type"]
    if _SUFFIX.get(quant_type) != keys[0].rsplit(".", 1)[-1]:
        raise ValidationError(f"quant_type {quant_type!r} in the JSON does not match the key {keys[0]!r}")
    shape = tuple(fields["shape"]) if fields["shape"] is not None else None
    if shape is None or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ValidationError(f"shape {fields['shape']!r} in {keys[0]} must be a list of non-negative ints")
    absmax = _get(tensors, f"{name}.absmax").reshape(-1)
    nested = None
    if f"{name}.nested_absmax" in tensors or "nested_offset" in fields:
        for k in ("nested_blocksize", "nested_dtype", "nested_offset"):
            if k not in fields:
                raise ValidationError(f"{keys[0]} lacks {k!r} although the state is double-quantized")
        nested = {"codes": absmax, "absmax": _get(tensors, f"{name}.nested_absmax").reshape(-1),
                  "offset": float(fields["nested_offset"]), "blocksize": fields["nested_blocksize"],
                  "code": _get(tensors, f"{name}.nested_quant_map").reshape(-1), "dtype": fields["nested_dtype"]}
    return {"packed": _get(tensors, name).reshape(-1), "absmax": None if nested else absmax, "shape": shape,
            "quant_type": quant_type, "blocksize": fields["blocksize"],
            "code": _get(tensors, f"{name}.quant_map").reshape(-1), "dtype": fields["dtype"], "nested": nested}
