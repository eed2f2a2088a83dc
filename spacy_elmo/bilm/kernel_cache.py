"""Keeping oneDNN's kernel cache small: fixed row counts, and a cap for long training runs.

oneDNN (torch's CPU backend for convolutions and bf16 matrix products) builds a kernel for every
new problem and keeps up to 1,024 of them. A pretraining process grew by gigabytes this way
(docs/pretraining.md, "Memory during a leg"): the char CNN's row count is the number of
distinct tokens in a batch, different almost every step, and the cache held kernels by the
thousand. Two measures:

- `padded_rows`: rows are padded to one of at most 16 sizes per power of two, so the shapes a
  model sees are a bounded set (at most 1/16 extra rows above 128 rows, at most 7 below).
- `bound_onednn_cache`: pretraining caps the cache (ONEDNN_PRIMITIVE_CACHE_CAPACITY) before the
  first kernel is built. Measured on the default English config (200-400 steps): resident memory
  stays at ~1.2-1.4 GB with a cap of 8, against several GB within a few hundred steps without,
  at the same words/s.
"""

from __future__ import annotations

import os

ONEDNN_CACHE_ENV = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"
PRETRAIN_CACHE_CAPACITY = 8


def padded_rows(n: int) -> int:
    """The smallest size >= n on the grid: multiples of 8 up to 256, then 16 sizes per power of two."""
    if n <= 0:
        return 0
    step = max(8, 1 << max(0, n.bit_length() - 5))
    return -(-n // step) * step


def bound_onednn_cache(capacity: int = PRETRAIN_CACHE_CAPACITY) -> bool:
    """Cap oneDNN's kernel cache unless the user set ONEDNN_PRIMITIVE_CACHE_CAPACITY; True if set here.

    oneDNN reads the variable once, when it builds its first kernel: call this before any torch
    work in the process (a cap set later has no effect).
    """
    if ONEDNN_CACHE_ENV in os.environ:
        return False
    os.environ[ONEDNN_CACHE_ENV] = str(capacity)
    return True
