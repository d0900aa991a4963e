"""Keep a streaming tool's resident memory at what it actually holds.

glibc raises its mmap threshold each time a large block is freed (up to 32 MB),
after which blocks of a layer tensor's size (~30 MB for Nano) come from the heap
and are not returned to the OS when freed: a converter that handles one tensor
at a time would still grow by hundreds of MB. Fixing the threshold at 1 MiB
makes every big block its own mapping, returned on free. No-op off glibc.
"""
from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def return_freed_memory_eagerly(threshold_bytes: int = 1 << 20) -> bool:
    """Pin glibc's mmap threshold; True when it took effect."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    except (OSError, AttributeError):
        return False
