"""One busgan process per work directory (or output folder) at a time.

``fcntl.flock`` on the folder itself rather than a lock library or a lock file: the kernel
drops the lock when its process dies (even by SIGKILL), so a stale lock cannot exist and needs
no detection, and nothing is written into a folder that may hold the user's own files. The
holder is named from ``/proc/locks`` (Linux). POSIX only, as is busgan's crash-safe writing.
Processes of one multi-process training (``BUSGAN_PROCESS_ID`` > 0) work under the lock that
process 0 holds, and the workers ``--processes N`` starts (``BUSGAN_LOCKED_BY_PARENT``) under
their parent's.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from busgan.errors import BusganError


def _holder(folder: Path) -> str:
    """'process PID (started ...)' of the flock on ``folder``, from /proc/locks where readable."""
    try:
        st = os.stat(folder)
        for line in Path("/proc/locks").read_text().splitlines():
            parts = line.split()
            if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].endswith(f":{st.st_ino}"):
                pid = parts[4]
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(os.stat(f"/proc/{pid}").st_ctime))
                return f"process {pid} (started {started})"
    except (OSError, ValueError):
        pass
    return "another busgan process"


@contextlib.contextmanager
def folder_lock(folder: Path, what: str = "work directory") -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` (created) for the block, or refuse at once."""
    if int(os.environ.get("BUSGAN_PROCESS_ID", "0") or 0) > 0 or os.environ.get("BUSGAN_LOCKED_BY_PARENT"):
        yield  # process 0 of this training, or the parent of the workers, holds it
        return
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise BusganError(f"{what} {folder} is in use by {_holder(folder)}; wait for it to "
                              "finish, or use another folder") from None
        yield
    finally:
        os.close(fd)  # closing releases the lock
