"""A file's pages in the operating system's page cache: read them in, drop them, count them.

A model server that maps its weights file (llama.cpp maps a GGUF) starts as fast as the
file can be faulted in: from RAM when its pages are cached, from disk when they are
not. The page-cache warm tier keeps an evicted model's file cached (``read_ahead``) and
lets it go when the tier drops the model (``drop``). ``resident_bytes`` tells how much
of a file is cached (``mincore`` over a read-only mapping), for tests and benchmarks.

Linux (and other POSIX systems with ``posix_fadvise``); elsewhere ``read_ahead`` only
reads, ``drop`` does nothing and ``resident_bytes`` is unknown (None).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import mmap
import os
import threading

CHUNK = 8 * 1024 * 1024
"""Bytes per read in ``read_ahead``: large sequential reads, the disk's best pattern."""


def read_ahead(path: str, stop: threading.Event | None = None) -> int:
    """Bring the whole file into the page cache; return the bytes read. Blocking (a
    sequential read of the file): run it in a worker thread. ``stop`` set ends it early.

    ``POSIX_FADV_WILLNEED`` first (the kernel starts reading at once, asynchronously),
    then a sequential read of every byte, which returns only once the pages are in: an
    advice alone may be cut short by the kernel's readahead limits. Pages already cached
    (a server that just stopped leaves most of its mapped file there) cost a copy."""
    done = 0
    with open(path, "rb", buffering=0) as file:
        _advise(file.fileno(), "POSIX_FADV_WILLNEED")
        view = memoryview(bytearray(CHUNK))
        while not (stop is not None and stop.is_set()) and (count := file.readinto(view)):
            done += count
    return done


def drop(path: str) -> None:
    """Ask the kernel to drop the file's cached pages (``POSIX_FADV_DONTNEED``).

    Pages a running process maps, or not yet written back, stay; a missing file is
    nothing to drop. Cheap (no I/O), but a system call: call it off the event loop."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return
    try:
        _advise(fd, "POSIX_FADV_DONTNEED")
    finally:
        os.close(fd)


def flush_and_drop(path: str) -> None:
    """Write the file's dirty pages back, then drop its cached pages (a benchmark's
    cold start: a freshly written file's dirty pages cannot be dropped)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        _advise(fd, "POSIX_FADV_DONTNEED")
    finally:
        os.close(fd)


def resident_bytes(path: str) -> int | None:
    """Bytes of the file now in the page cache (page-granular), or None where ``mincore``
    is not available. Maps the file read-only without touching it: counting faults
    nothing in."""
    size = os.path.getsize(path)
    libc = _libc()
    if libc is None:
        return None
    if size == 0:
        return 0
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise _errno_error(f"mmap of {path}")
        try:
            vector = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(address), size, vector) != 0:
                raise _errno_error(f"mincore on {path}")
        finally:
            libc.munmap(ctypes.c_void_p(address), size)
    finally:
        os.close(fd)
    return min(size, sum(flag & 1 for flag in vector) * page)


_MAP_FAILED = ctypes.c_void_p(-1).value


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library with ``mmap``, ``mincore`` and ``munmap`` typed, or None."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    if not hasattr(libc, "mincore"):
        return None
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]  # fmt: skip
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    return libc


def _errno_error(what: str) -> OSError:
    errno = ctypes.get_errno()
    return OSError(errno, f"{what}: {os.strerror(errno)}")


def _advise(fd: int, name: str) -> None:
    advice = getattr(os, name, None)
    if advice is None or not hasattr(os, "posix_fadvise"):
        return  # no page-cache advice on this system: the tier still works, unadvised
    os.posix_fadvise(fd, 0, 0, advice)
