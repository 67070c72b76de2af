"""accel: fast backends for refquant's ops behind one Backend protocol.

``accel.get_backend("numba")`` returns a backend; ``accel.available_backends()`` lists
every registered backend, loaded or with the reason it is unavailable. Algorithm code
never branches on the backend: it asks the registry for one and calls op methods.
"""

from accel.dispatch import Dispatched, dispatched
from accel.ops import OP_SPECS, OpSpec
from accel.protocol import Backend, OpCapability, supports
from accel.registry import BackendInfo, BackendLoadError, available_backends, get_backend

__all__ = [
    "OP_SPECS", "OpSpec", "Dispatched", "dispatched", "Backend", "OpCapability", "supports",
    "BackendInfo", "BackendLoadError", "available_backends", "get_backend",
]
