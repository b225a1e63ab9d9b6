"""Host-memory allocator settings for XLA:CPU training processes.

An XLA:CPU executable allocates its temporary buffer (all of a train step's activations, hundreds of MB) once
per call and frees it at the end. glibc serves such a request from XLA's worker threads with a fresh mmap, so
every step page-faults the whole buffer back in and the kernel zero-fills it. `retain_freed_memory()` makes
glibc keep freed memory for reuse instead: one arena for all threads, no mmap for large blocks, no trimming of
the heap top. The process keeps its peak heap size (it is not returned to the OS until exit).

Call it first thing in a program, before JAX starts its CPU backend: threads that have already picked a
per-thread arena keep it. It is process-global, so libraries never call it on import; entry points do. On a C
library without `mallopt` (macOS, musl) it does nothing and returns False.
"""

from __future__ import annotations

import ctypes

# glibc's mallopt parameter numbers (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
_TRIM_NEVER = -1  # mallopt(3): "Setting M_TRIM_THRESHOLD to -1 disables trimming completely"


def retain_freed_memory() -> bool:
  """Applies the settings above; True when the C library accepted all of them."""
  try:
    # The symbols already loaded into this process (libc among them): no library search, no subprocess.
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return False
  mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
  settings = ((M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, _TRIM_NEVER))
  return all(mallopt(param, value) == 1 for param, value in settings)
