"""Files written whole or not at all, with the permissions of the user's umask.

A file made by :func:`open` gets ``0o666 & ~umask`` (0644 under umask 022, 0640 under 027); one
made by :func:`tempfile.mkstemp` gets 0600 whatever the umask, so a colleague in the same group
cannot read it once it is renamed into place. :func:`atomic_file` writes a temporary beside the
target (``.NAME.<random>.partial``: same folder, so the rename never crosses file systems),
flushes and syncs it, gives it the umask's mode and renames it over the target with
:func:`os.replace`. Any exception (a full disk, Ctrl-C) removes the temporary and leaves the
target as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from typing import IO

PARTIAL_SUFFIX = ".partial"


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux >= 4.7).

    Elsewhere it is read by setting and restoring it, which is not safe while other threads
    create files.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def umask_mode() -> int:
    """The mode :func:`open` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def follow_umask(path: str | os.PathLike) -> None:
    """Give ``path`` the mode a plain :func:`open` would have given it (after ``mkstemp``)."""
    os.chmod(path, umask_mode())


@contextlib.contextmanager
def atomic_file(
    path: str | os.PathLike,
    mode: str = "w",
    *,
    encoding: str | None = None,
    newline: str | None = None,
) -> Iterator[IO]:
    """A file object whose contents replace ``path`` whole when the block ends without error.

    ``mode`` is ``"w"`` (text; ``encoding`` defaults to UTF-8) or ``"wb"``. The folder must
    exist. E.g. ``with atomic_file(p, "wb") as f: torch.save(state, f)``.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_file writes with mode 'w' or 'wb', not {mode!r}.")
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    handle, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=PARTIAL_SUFFIX, dir=folder)
    try:
        if mode == "wb":
            stream = os.fdopen(handle, "wb")
        else:
            stream = os.fdopen(handle, "w", encoding=encoding or "utf-8", newline=newline)
        with stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        follow_umask(temporary)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _sync_folder(folder)


def write_text_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` whole (:func:`atomic_file`)."""
    with atomic_file(path, "w", encoding=encoding) as stream:
        stream.write(text)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Replace ``path`` with ``data`` whole (:func:`atomic_file`)."""
    with atomic_file(path, "wb") as stream:
        stream.write(data)


def _sync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable where the system allows it (best effort)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)
