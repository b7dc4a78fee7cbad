"""Copying a file's bytes between two open descriptors, holes kept as holes.

A sandbox can make a file of a terabyte that holds a few blocks; read and written whole, its copy would
fill the disk. Only the data extents are copied (SEEK_DATA/SEEK_HOLE), by copy_file_range (in the kernel,
a reflink where the file system can), and the copy is cut to the source's size, which leaves the holes
unallocated. Bytes are copied only up to the size the source had when it was opened, so a file the
sandbox keeps growing cannot keep the copy going.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

_CHUNK = 1 << 30  # bytes per copy_file_range call
_BUFFER = 1 << 20  # bytes per read where copy_file_range cannot be used
# copy_file_range refuses these descriptor pairs (other file systems, old kernels, seccomp): read/write then
_NO_COPY_RANGE = (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EPERM)


def copy_data(src: int, dst: int, st: os.stat_result) -> int:
    """Copy the bytes of src (whose fstat is st) into the empty file dst; returns the bytes copied."""
    size = st.st_size
    if size <= 0:
        return 0
    if st.st_blocks * 512 >= size:
        extents: Iterator[tuple[int, int]] = iter([(0, size)])  # fully allocated: nothing to skip
    else:
        extents = data_extents(src, size)
    copied = 0
    end = 0
    for start, stop in extents:
        n = _copy_range(src, dst, start, stop - start)
        copied += n
        end = start + n
    if end < size:
        os.ftruncate(dst, size)  # a trailing hole (or a source that shrank meanwhile)
    return copied


def data_extents(fd: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each stretch of data below size; the whole range where holes cannot be found."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return  # nothing but a hole from pos on
            if exc.errno in (errno.EINVAL, errno.EOPNOTSUPP):
                yield pos, size
                return
            raise
        if start >= size:
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        pos = end


def _copy_range(src: int, dst: int, start: int, count: int) -> int:
    """Copy count bytes at start (same offset in both); fewer when the source ends sooner."""
    pos = start
    left = count
    while left > 0:
        try:
            n = os.copy_file_range(src, dst, min(left, _CHUNK), pos, pos)
        except OSError as exc:
            if exc.errno not in _NO_COPY_RANGE:
                raise
            return pos - start + _read_write(src, dst, pos, left)
        if n == 0:
            break
        pos += n
        left -= n
    return pos - start


def _read_write(src: int, dst: int, start: int, count: int) -> int:
    pos = start
    end = start + count
    while pos < end:
        chunk = os.pread(src, min(_BUFFER, end - pos), pos)
        if not chunk:
            break
        view = memoryview(chunk)
        while view:
            written = os.pwrite(dst, view, pos)
            view = view[written:]
            pos += written
    return pos - start
