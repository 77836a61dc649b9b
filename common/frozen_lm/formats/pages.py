"""Give back the resident pages of a memory-mapped checkpoint tensor once it has been copied into the block.

The readers memory-map their files (``torch.load(mmap=True)``, safetensors, GGUF's ``np.memmap``), so every
page a tensor's bytes span stays in this process's resident set until the file is unmapped: loading one
LLaMA-7B block would hold the layer's stored bytes (386 MiB in fp16) on top of the block itself. After each
tensor is consumed, ``release_file_pages`` tells the kernel (Linux ``madvise(MADV_DONTNEED)``) that this process
no longer needs those pages; the data stays in the page cache and is read again from the file if touched.

Only whole pages inside one file-backed mapping (as listed in ``/proc/self/maps``) are released: on anonymous
memory (a heap copy, e.g. of joined model-parallel shards) ``MADV_DONTNEED`` would zero data, so it is never
applied there. Elsewhere than Linux this does nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from pathlib import Path

import numpy as np

MADV_DONTNEED = 4  # <sys/mman.h> on Linux
_MAPS = Path("/proc/self/maps")


def _file_mapping_holds(start: int, end: int) -> bool:
    """Whether [start, end) lies inside one mapping of a file (a path and a non-zero inode) of this process."""
    try:
        lines = _MAPS.read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split(maxsplit=5)
        if len(fields) < 6 or fields[4] == "0" or not fields[5].startswith("/"):
            continue
        low, high = (int(x, 16) for x in fields[0].split("-"))
        if low <= start and end <= high:
            return True
    return False


def release_file_pages(buffer: memoryview | np.ndarray) -> int:
    """Drop this process's resident pages of ``buffer`` when it lies in a file mapping; returns the bytes dropped.

    Only the pages wholly inside ``buffer`` are dropped, so neighbouring data is never touched (and a neighbour's
    page that is dropped would just be read again from the file).
    """
    if not sys.platform.startswith("linux"):
        return 0
    array = np.frombuffer(buffer, dtype=np.uint8) if not isinstance(buffer, np.ndarray) else buffer
    if array.nbytes == 0:
        return 0
    address = array.ctypes.data
    page = mmap.PAGESIZE
    start = -(-address // page) * page
    end = (address + array.nbytes) // page * page
    if end <= start or not _file_mapping_holds(address, address + array.nbytes):
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_DONTNEED) != 0:
        return 0
    return end - start
