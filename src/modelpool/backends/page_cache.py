"""A file's pages in the operating system's page cache: read them in, drop them, count them.

A model server that maps its weights file (llama.cpp maps a GGUF) starts as fast as the
file can be faulted in: from RAM when its pages are cached, from disk when they are
not. The page-cache warm tier keeps an evicted model's file cached (``read_ahead``) and
lets it go when the tier drops the model (``drop``). ``resident_bytes`` tells how much
of a file is cached (``mincore`` over a read-only mapping).

``cache_file`` is what an in-process loader calls before it maps a file: a file faulted
in through a mapping comes off the disk a few pages at a time and stays in small pages,
so that every later mapping of it faults far more often (a cached 1.08 GB checkpoint
mapped and read in 69-70 ms after a cold mapped load, 29-33 ms after a sequential read:
bench/results/load_restore/page-sizes-experiment-20261207.txt).

Linux (and other POSIX systems with ``posix_fadvise``); elsewhere ``read_ahead`` only
reads, ``drop`` does nothing, ``resident_bytes`` is unknown (None) and no file
``looks_cached``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import io
import mmap
import os
import threading
from collections.abc import Iterator

CHUNK = 64 * 1024 * 1024
"""Bytes per step of ``read_ahead``: large sequential reads, the disk's best pattern, and
often enough a look at ``stop``."""

SAMPLE_SPOTS = 64
SAMPLE_PAGES = 16
"""``looks_cached`` looks at 64 runs of 16 pages: about a third of a millisecond here,
whatever the size of the file."""

_RESIDENT_FLAG = bytes(flag & 1 for flag in range(256))
"""``mincore`` sets only the low bit of a page's byte for sure: a table keeping that bit."""


def read_ahead(path: str, stop: threading.Event | None = None) -> int:
    """Bring the whole file into the page cache; return the bytes read. Blocking (a
    sequential read of the file): run it in a worker thread. ``stop`` set ends it early.

    ``POSIX_FADV_WILLNEED`` first (the kernel starts reading at once, asynchronously),
    then a sequential read of every byte, which returns only once the pages are in: an
    advice alone may be cut short by the kernel's readahead limits. The read goes to
    ``/dev/null`` through ``sendfile``, so no byte is copied out of the cache (cheaper than
    a read into a buffer, cold or cached); where ``sendfile`` cannot, into a buffer."""
    with open(path, "rb", buffering=0) as file:
        _advise(file.fileno(), "POSIX_FADV_WILLNEED")
        try:
            if hasattr(os, "sendfile"):
                return _send_to_null(file.fileno(), stop)
        except OSError:
            file.seek(0)  # sendfile refused this file or system: read it instead
        return _read_through(file, stop)


def cache_file(path: str) -> int:
    """Read the file into the page cache unless it looks all there; the bytes read ahead.

    For a loader about to map the file (safetensors' ``load_file``): cold, the read
    costs what a sequential read of the disk costs and the mapping then faults in from
    RAM; warm, a look at a sample of its pages (``looks_cached``) and nothing else."""
    if looks_cached(path):
        return 0
    return read_ahead(path)


def looks_cached(path: str, spots: int = SAMPLE_SPOTS) -> bool:
    """Whether ``spots`` runs of pages spread evenly over the file, its first and last
    included, are all in the page cache. A sample, because ``mincore`` over every page
    costs about 20 ms per GB here, what reading the cached GB costs (Linux's
    ``cachestat`` counts exactly, fast over large pages but as slow over small ones);
    a file with holes the sample misses is faulted in by its mapping, as without this.
    False where ``mincore`` is not available."""
    size = os.path.getsize(path)
    libc = _libc()
    if libc is None:
        return False
    if size == 0:
        return True
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    run = min(SAMPLE_PAGES, pages)
    starts = sorted({(pages - run) * spot // max(spots - 1, 1) for spot in range(spots)})
    vector = (ctypes.c_ubyte * run)()
    with _mapped(libc, path, size) as address:
        for start in starts:
            length = min(run * page, size - start * page)
            if libc.mincore(ctypes.c_void_p(address + start * page), length, vector) != 0:
                raise _errno_error(f"mincore on {path}")
            if bytes(vector)[: -(-length // page)].translate(_RESIDENT_FLAG).count(0):
                return False
    return True


def _send_to_null(fd: int, stop: threading.Event | None) -> int:
    size = os.fstat(fd).st_size
    done = 0
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        while done < size and not (stop is not None and stop.is_set()):
            count = os.sendfile(null, fd, done, min(CHUNK, size - done))
            if count == 0:
                break  # the file shrank meanwhile
            done += count
    finally:
        os.close(null)
    return done


def _read_through(file: io.FileIO, stop: threading.Event | None) -> int:
    done = 0
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
    vector = (ctypes.c_ubyte * ((size + page - 1) // page))()
    with _mapped(libc, path, size) as address:
        if libc.mincore(ctypes.c_void_p(address), size, vector) != 0:
            raise _errno_error(f"mincore on {path}")
    return min(size, bytes(vector).translate(_RESIDENT_FLAG).count(1) * page)


@contextlib.contextmanager
def _mapped(libc: ctypes.CDLL, path: str, size: int) -> Iterator[int]:
    """The file mapped read-only (touching nothing: a mapping faults pages in only when
    read), unmapped on leaving."""
    fd = os.open(path, os.O_RDONLY)
    try:
        address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if address in (None, _MAP_FAILED):
            raise _errno_error(f"mmap of {path}")
        try:
            yield address
        finally:
            libc.munmap(ctypes.c_void_p(address), size)
    finally:
        os.close(fd)


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
