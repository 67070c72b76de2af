"""Block formats as declarations: byte fields plus two block functions.

A format is a subclass of :class:`BlockFormat` registered by name::

    class Q4_0(BlockFormat, name="q4_0"):
        fields = (Field("d", "<f2"), Field("qs", "u1", 16))

        @classmethod
        def quantize_blocks(cls, x, weights): ...      # (n, 32) float32 -> (n,) cls.dtype
        @classmethod
        def dequantize_blocks(cls, blocks): ...        # (n,) cls.dtype -> (n, 32) float32

From ``fields`` the class derives a packed NumPy structured dtype (:attr:`dtype`, the C
struct of ggml-common.h with no padding, little-endian) and :attr:`type_size`, the bytes
per block; ggml's type id and block size come from the one table of ggml types,
:mod:`refquant.io.ggml_types`, which the declared fields must agree with (checked when the
class is created). Shapes, validation and the byte view live once, in :mod:`refquant.gguf`
(gguf-py's ``quants.py`` split between a generic codec and per-type block rules).

``FORMATS`` maps the lowercase GGUF name to the class; ``FORMATS_BY_ID`` maps ggml's
type id (``enum ggml_type`` in ``ggml.h``) to the class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from refquant.io.ggml_types import bits_per_weight as ggml_bits_per_weight
from refquant.io.ggml_types import block_size, ggml_type, type_size

__all__ = ["Field", "BlockFormat", "FORMATS", "FORMATS_BY_ID"]

FORMATS: dict[str, type[BlockFormat]] = {}
FORMATS_BY_ID: dict[int, type[BlockFormat]] = {}


@dataclass(frozen=True)
class Field:
    """One member of a block struct.

    Parameters
    ----------
    name : str
        Member name as in ggml-common.h (``d``, ``qs``, ``scales_h`` ...).
    dtype : str
        Little-endian NumPy dtype string of one element: ``"<f2"`` (ggml_half),
        ``"<f4"``, ``"u1"``, ``"i1"``, ``"<u2"``, ``"<i2"``.
    count : int
        Number of elements (an array member when > 1).
    """

    name: str
    dtype: str
    count: int = 1

    def as_dtype_entry(self) -> tuple:
        if self.count == 1:
            return (self.name, np.dtype(self.dtype))
        return (self.name, np.dtype(self.dtype), (self.count,))


class BlockFormat:
    """A ggml block type: declared byte fields, ``quantize_blocks``, ``dequantize_blocks``.

    Subclass with the keyword argument ``name`` (lowercase GGUF spelling, a type of
    :mod:`refquant.io.ggml_types`) and a ``fields`` tuple. Class attributes derived at
    registration:

    type_id : int
        ggml's type id (``enum ggml_type``), from :mod:`refquant.io.ggml_types`.
    block_size : int
        Elements per block, from :mod:`refquant.io.ggml_types`.
    dtype : numpy.dtype
        Packed structured dtype of one block.
    type_size : int
        Bytes per block (``dtype.itemsize``), ggml's ``type_size``.

    Behaviour flags a subclass may override:

    uses_imatrix : bool
        False when ggml ignores the importance matrix for the type (the generic codec then
        passes ``weights=None``).
    allows_nonfinite : bool
        True when NaN/inf inputs have a defined encoding (F16, BF16). Block quantizers
        reject non-finite input instead of reproducing undefined C behaviour.
    requires_imatrix : bool
        True when ggml refuses to quantize the type without an importance matrix
        (``ggml_quantize_requires_imatrix``: IQ2_XXS, IQ2_XS, IQ1_S).
    chunk_elems : int
        Elements per ``quantize_blocks`` call from the generic codec (default 2^16,
        256 KiB of float32, so a search's temporaries stay in cache). Searches that loop
        in Python over the elements of a sub-block take more, so that each NumPy call
        covers more sub-blocks. Blocks are independent: it changes speed, never bytes.
    """

    name: ClassVar[str]
    type_id: ClassVar[int]
    block_size: ClassVar[int]
    fields: ClassVar[tuple[Field, ...]]
    dtype: ClassVar[np.dtype]
    type_size: ClassVar[int]
    uses_imatrix: ClassVar[bool] = True
    allows_nonfinite: ClassVar[bool] = False
    requires_imatrix: ClassVar[bool] = False
    chunk_elems: ClassVar[int] = 1 << 16

    def __init_subclass__(cls, *, name: str | None = None, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if name is None:  # an abstract intermediate (a family base class)
            return
        if name != name.lower():
            raise ValueError(f"BlockFormat name {name!r} must be lowercase (GGUF spelling)")
        if name in FORMATS:
            raise ValueError(f"BlockFormat {name!r} is registered twice ({FORMATS[name].__module__} and {cls.__module__})")
        if "fields" not in cls.__dict__:
            raise TypeError(f"BlockFormat {name!r} must declare its byte fields")
        t = ggml_type(name, "BlockFormat name")  # ValueError for a name that is not a ggml type
        dtype = np.dtype([f.as_dtype_entry() for f in cls.fields])  # packed: no align
        if dtype.itemsize != type_size(t):
            raise TypeError(f"BlockFormat {name!r} declares {dtype.itemsize} bytes of fields; a {name} block is "
                            f"{type_size(t)} bytes (refquant.io.ggml_types)")
        cls.name = name
        cls.type_id = int(t)
        cls.block_size = block_size(t)
        cls.dtype = dtype
        cls.type_size = dtype.itemsize
        FORMATS[name] = cls
        FORMATS_BY_ID[cls.type_id] = cls

    # -- the two per-type rules -------------------------------------------------------

    @classmethod
    def quantize_blocks(cls, x: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        """Encode blocks.

        Parameters
        ----------
        x : ndarray of float32, shape (n_blocks, block_size)
        weights : ndarray of float32, shape (n_blocks, block_size), or None
            Per-element importance from :meth:`importance_weights` (by default the
            imatrix entry of each element's column); None quantizes without an imatrix.

        Returns
        -------
        ndarray of ``cls.dtype``, shape (n_blocks,)
        """
        raise NotImplementedError(f"{cls.__name__}.quantize_blocks")  # pragma: no cover

    @classmethod
    def dequantize_blocks(cls, blocks: np.ndarray) -> np.ndarray:
        """Decode blocks: ndarray of ``cls.dtype`` (n_blocks,) -> float32 (n_blocks, block_size)."""
        raise NotImplementedError(f"{cls.__name__}.dequantize_blocks")  # pragma: no cover

    # -- hooks with defaults ----------------------------------------------------------

    @classmethod
    def importance_weights(cls, x: np.ndarray, imatrix: np.ndarray) -> np.ndarray:
        """Per-element weights handed to :meth:`quantize_blocks`, computed on whole rows.

        Default: the imatrix value of each element's column (the ``quant_weights`` pointer
        ggml passes to the block quantizer). Formats whose weights need row statistics
        (the legacy types' sigma2 over the whole row) override this.

        Parameters
        ----------
        x : ndarray of float32, shape (rows, n_per_row)
        imatrix : ndarray of float32, shape (n_per_row,)

        Returns
        -------
        ndarray of float32, shape (rows, n_per_row)
        """
        return np.broadcast_to(imatrix, x.shape)

    @classmethod
    def empty_blocks(cls, n: int) -> np.ndarray:
        """``n`` zero-filled blocks (ggml's unwritten members read as zero)."""
        return np.zeros(n, dtype=cls.dtype)

    @classmethod
    def bits_per_weight(cls) -> float:
        """Stored bits per element: 8 * type_size / block_size (:func:`refquant.io.ggml_types.bits_per_weight`)."""
        return ggml_bits_per_weight(cls.name)

    def __init__(self) -> None:  # formats are used as classes, never instantiated
        raise TypeError(f"{type(self).__name__} is a format description; use its classmethods")
