"""The pretraining process's memory: what glibc's allocator keeps, returns and maps again.

A step allocates and frees the same large transient buffers every time (char-CNN activations and
their gradients, the sampled softmax's logits: 10-40 MB each). By default glibc maps buffers that
large straight from the kernel and unmaps them when freed, so every step faults the same memory in
again as fresh, zeroed pages (docs/pretraining.md, "Where a late leg's time goes"). Two measures:

- `reuse_freed_memory`: serve every buffer from the heap and never trim it on free, so the next
  step reuses the same pages (the equivalent of MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...).
- `release_free_memory`: every log window, hand what is free inside the heap back to the system
  (malloc_trim), so a leg's resident memory stays bounded (it grew by gigabytes without it).

Both are no-ops where there is no glibc (macOS, Windows, musl).
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
# The variables glibc reads at start-up for the same two settings; a user who set one keeps theirs.
ALLOCATOR_ENV = ("MALLOC_MMAP_MAX_", "MALLOC_TRIM_THRESHOLD_")
NEVER_TRIM = 2**31 - 1  # mallopt takes an int: ~2 GB of free heap top before an automatic trim


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not Linux
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None  # glibc, not musl


_LIBC = _glibc()


def reuse_freed_memory() -> bool:
    """Make glibc keep freed buffers in its heap for reuse instead of unmapping or trimming them.

    Returns True if set here; False where there is no glibc, or where the user set
    MALLOC_MMAP_MAX_ or MALLOC_TRIM_THRESHOLD_ (their choice stands). Call it once, before the
    training loop: it changes the process's allocator for everything that follows.
    """
    if _LIBC is None or any(name in os.environ for name in ALLOCATOR_ENV):
        return False
    return bool(_LIBC.mallopt(M_MMAP_MAX, 0)) and bool(_LIBC.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


def release_free_memory() -> None:
    """Hand memory that is free inside the allocator back to the system (glibc's malloc_trim).

    A long run frees and allocates buffers of ever-changing sizes; glibc keeps the freed pages,
    and a leg's resident memory grew by gigabytes (docs/pretraining.md). No-op elsewhere.
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def resident_mb() -> int | None:
    """This process's resident memory in MB (Linux), logged with the training figures; else None."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
    return None
