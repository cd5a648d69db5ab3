"""One busgan process per work directory (or output folder) at a time.

``fcntl.flock`` rather than a lock library: the kernel drops the lock when its process dies
(even by SIGKILL), so a stale lock cannot exist and needs no detection; the file only tells
the second process who holds it. POSIX only, as is the rest of busgan's crash-safe writing.
Processes of one multi-process training (``BUSGAN_PROCESS_ID`` > 0) work under the lock that
process 0 holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from busgan.errors import BusganError

LOCK_NAME = ".busgan-lock"


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "work directory") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created) for the block, or refuse at once."""
    if int(os.environ.get("BUSGAN_PROCESS_ID", "0") or 0) > 0:
        yield  # process 0 of this training holds it
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode("utf-8", "replace").strip() or "another process"
            raise BusganError(f"{what} {folder} is in use by {holder}; wait for it to finish, "
                              "or use another folder") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"process {os.getpid()} (started {time.strftime('%Y-%m-%d %H:%M:%S')})".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
