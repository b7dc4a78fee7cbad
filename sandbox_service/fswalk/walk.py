"""Visiting every entry of a tree by descriptor (for work done entry by entry in place, such as labels)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

from .fds import DirChain, TreeChanged, lstat_at, open_dir_at


def entries_at(dir_fd: int, name: str) -> Iterator[tuple[int, str, os.stat_result]]:
    """Every entry at and below `name` in dir_fd, parents before children, as (descriptor of the directory
    it is in, its name, its lstat). The descriptor stays valid until the next entry is asked for; act on
    the entry through it (``*at`` calls, or /proc/self/fd/N/NAME without following the last component).

    Links are not followed, directories on another device are listed but not entered, and an entry
    replaced by another between being listed and opened is not entered either. Iterative, with a bounded
    number of open descriptors (fds.DirChain)."""
    st = lstat_at(dir_fd, name)
    if st is None:
        return
    yield dir_fd, name, st
    if not stat.S_ISDIR(st.st_mode):
        return
    fd, st = open_dir_at(dir_fd, name, st)
    dev = st.st_dev
    chain = DirChain(fd, st)
    try:
        pending = [sorted(os.listdir(fd), reverse=True)]
        while pending:
            names = pending[-1]
            if not names:
                pending.pop()
                if pending:
                    chain.pop()
                continue
            entry = names.pop()
            st = lstat_at(chain.fd, entry)
            if st is None:
                continue
            yield chain.fd, entry, st
            if not stat.S_ISDIR(st.st_mode) or st.st_dev != dev:
                continue
            try:
                sub, st = open_dir_at(chain.fd, entry, st)
            except TreeChanged:
                continue
            chain.push(sub, st)
            pending.append(sorted(os.listdir(sub), reverse=True))
    finally:
        chain.close()
