"""The one exception type users see: the CLI prints its message as a single line."""


class BusganError(Exception):
    """A problem with the user's input or environment.

    The message must name the file, folder or key at fault and say how to fix it, on one line.
    """


def shown(path: object) -> str:
    """A file name as messages show it: as is when printable, else quoted on one line.

    A name holding a newline, a tab, another control character or undecodable bytes is
    shown as a Python string literal (``'bad\\nname.png'``), so the message stays one line
    and says exactly which file it means.
    """
    import os

    text = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else str(path)
    return text if text.isprintable() else repr(text)


def os_error_message(e: OSError, fallback: object = None) -> str:
    """One line for an operating-system error: the file or folder at fault and what to do.

    ``fallback`` names the folder being written when the error carries no file name (a
    ``write`` that finds the disk full names none).
    """
    import errno
    import os

    name = e.filename if e.filename is not None else fallback
    at = f"{shown(name)}: " if name is not None else ""
    code = e.errno
    if code == errno.EROFS:
        return f"{at}the file system is read-only; choose a folder you can write to (--out or --work)"
    if code in (errno.EACCES, errno.EPERM):
        return (f"{at}permission denied; choose a folder you can write to (--out or --work), "
                "or fix the permissions")
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        what = "disk quota exceeded" if code != errno.ENOSPC else "no space left on the device"
        sizes = []
        needed = getattr(e, "needed_bytes", None)
        if needed is not None:
            sizes.append(f"{_size(needed)} needed for this file")
        free = _free_bytes(name)
        if free is not None:
            sizes.append(f"{_size(free)} free")
        more = f" ({', '.join(sizes)})" if sizes else ""
        return f"{at}{what}{more}; free some space or choose a folder on another disk"
    if code == errno.EEXIST:
        if name is not None and os.path.isfile(name):
            return f"{at}is a file, where a folder is needed; choose another --out or move the file"
        return f"{at}already exists; choose another name"
    if code == errno.ENOTDIR:
        blocker = _file_in_path(name)
        if blocker is not None:
            return (f"{blocker}: is a file, where a folder is needed; choose another --out "
                    "or move the file")
        return f"{at}is not a folder; give a folder"
    if code == errno.EISDIR:
        return f"{at}is a folder, where a file is needed; give a file"
    if code == errno.ENOENT:
        return f"{at}no such file or folder; check the path"
    if code == errno.EBUSY:
        return (f"{at}is in use (the current directory or a mount point?) and cannot be replaced; "
                "give a new folder")
    if code == errno.ENAMETOOLONG:
        return f"{at}the name is too long for the file system; choose a shorter path"
    if code in (errno.EMFILE, errno.ENFILE):
        return "too many open files; raise the limit (ulimit -n) or use fewer workers"
    if code == errno.ELOOP:
        return f"{at}too many levels of symbolic links (a link loop?); fix the link"
    if code == errno.EIO:
        return f"{at}input/output error: the disk or network file system failed; check it and rerun"
    if code == errno.EFBIG:
        return f"{at}file too large for the file system; choose a folder on another file system"
    detail = e.strerror or str(e) or type(e).__name__
    if e.filename2 is not None:
        detail += f" (and {e.filename2})"
    return f"{at}{detail}"


def _size(n: int) -> str:
    value = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} bytes"  # pragma: no cover


def _free_bytes(name: object) -> int | None:
    """Free bytes on the file system of ``name`` (its nearest existing folder), when known."""
    import os
    import shutil

    if name is None:
        return None
    path = os.path.abspath(os.fsdecode(name)) if isinstance(name, (str, bytes, os.PathLike)) else None
    while path:
        if os.path.isdir(path):
            try:
                return shutil.disk_usage(path).free
            except OSError:
                return None
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return None


def _file_in_path(name: object) -> str | None:
    """The first component of ``name`` that exists and is not a folder (the cause of ENOTDIR)."""
    import os

    if not isinstance(name, (str, bytes, os.PathLike)):
        return None
    path = os.fsdecode(name)
    parts = []
    head = path
    while head and head not in parts:
        parts.append(head)
        head = os.path.dirname(head)
    for p in reversed(parts):  # shortest first
        if os.path.exists(p) and not os.path.isdir(p):
            return p
    return None
