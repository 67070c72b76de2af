"""Exception types raised by refquant.

Bad parameters raise the built-in ``ValueError`` / ``TypeError`` (with a message
naming the parameter, the value and what is allowed); the classes here are for
conditions that callers may want to catch specifically.
"""

from __future__ import annotations

__all__ = ["RefquantError", "UnsupportedError", "GGUFError", "ValidationError"]


class RefquantError(Exception):
    """Base class of every refquant-specific error."""


class UnsupportedError(RefquantError, NotImplementedError):
    """An operation / format pair that an implementation (usually a backend) does not support.

    Backends raise this instead of silently falling back to another code path.
    """


class ValidationError(RefquantError, ValueError):
    """A quantized container whose metadata or payload is inconsistent (``validate()``)."""


class GGUFError(RefquantError, ValueError):
    """A malformed, truncated or unsupported ``.gguf`` (or imatrix) file.

    The message names the field that failed its check and, where known, its byte offset.
    """
