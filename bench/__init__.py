"""Benchmarks of recbole-adt: ``python -m bench [--quick] [--output FILE]`` prints them all."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def steady_allocator(threshold: int = 1 << 30) -> bool:
    """Keep freed memory in glibc's heap instead of handing it back to the kernel.

    Dense Adam and dense embedding gradients allocate table-sized temporaries at every step.
    Above glibc's (moving) mmap threshold each one is a fresh mapping whose pages fault in again:
    a GMF epoch at Yelp-slice size then spends up to half its CPU time in the kernel (1.6M page
    faults), or none, by the allocator's history. Fixed thresholds make every epoch the fast one,
    so that side-by-side ratios measure the code. Process-wide; False where glibc is absent.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
        return bool(mallopt(_M_MMAP_THRESHOLD, threshold) and mallopt(_M_TRIM_THRESHOLD, threshold))
    except (OSError, AttributeError, TypeError):
        return False
