"""Safe operations on directory trees a sandbox controls: copy, remove, visit, open one path inside.

A sandbox's root user owns its tree and can change it at any moment, also while the tool works on it:
swap a directory for a symlink to the host's /etc, make hard links, FIFOs, 3000-deep directories, files
of a terabyte of holes. Everything here therefore works by descriptor: each component is opened with
O_NOFOLLOW under its parent's descriptor and checked with fstat to be what was listed, regular files are
read from the descriptor opened, never by path again; walks are iterative with an explicit stack and a
bounded number of open descriptors (fds.DirChain), so no depth makes them fail.

- copy_at / copy_path (copy.py): a tree, file or link, owners through an OwnerMap (owners.py), sparse
  files kept sparse (data.py); sockets, FIFOs, devices and mount points are skipped and reported.
- remove_at / remove_path (remove.py): a tree, file or link, also one with mode-000 directories.
- entries_at (walk.py): every entry of a tree, for work done in place (labels).
- open_beneath (beneath.py): one path under a root descriptor, links refused or kept inside the root.
"""

from .beneath import Resolve, open_beneath
from .copy import CopyReport, Skipped, copy_at, copy_path
from .fds import TreeChanged
from .owners import HOST, IdRange, OwnerMap, identity, remap
from .remove import remove_at, remove_path
from .walk import entries_at

__all__ = [
    "HOST",
    "CopyReport",
    "IdRange",
    "OwnerMap",
    "Resolve",
    "Skipped",
    "TreeChanged",
    "copy_at",
    "copy_path",
    "entries_at",
    "identity",
    "open_beneath",
    "remap",
    "remove_at",
    "remove_path",
]
