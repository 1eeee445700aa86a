"""The output folder of an experiment while it runs: checked, locked, cleaned, stopped cleanly.

``compare`` and ``grid`` run for hours on shared machines; they get killed, run twice by
mistake and pointed at the wrong folder. Around their runs (:class:`Workspace`):

- **Checked first** (:func:`check_output`, before any run): ``--output`` must be a folder, or
  a path whose nearest existing parent is a folder the user can write in. A file, a path
  through a file or a read-only folder is a ``ValueError`` (exit 2), not a traceback after the
  first run.
- **Locked**: ``DIR/.lock``, created with ``O_EXCL``, holds ``<pid> <host>``. A second command
  on the same folder raises a ``ValueError`` naming the holder's pid instead of running the
  same runs and appending to the same ``training.csv`` files; a lock whose process is gone (a
  ``kill -9``) is taken over with a note. Same scheme as the converters'
  (:class:`dataset_converters.base.Staging`), which live in another package.
- **Temporaries under DIR**: every run's checkpoint folder (unless ``--keep_checkpoints``) and
  anything the runs put in :mod:`tempfile`'s folder (``TMPDIR`` too, for spawned processes) go
  to ``DIR/.tmp/``, removed on exit and, after a ``kill -9``, on the next start, with the
  ``.NAME.*.partial`` files an interrupted atomic write (:mod:`recbole_adt.files`) left.
  Nothing is left in ``$TMPDIR``.
- **Signals**: SIGTERM, SIGHUP and SIGINT raise :class:`Stopped` in the main thread (where
  their handlers were the defaults), so the run in progress is recorded as not finished, its
  temporaries are removed and the command exits with 128 + the signal's number; the next
  start skips the finished runs. A second signal while stopping acts at once, as without
  this (the next start then removes what was left).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from recbole_adt.files import PARTIAL_SUFFIX

LOCK_FILE = ".lock"
TEMPORARY_DIR = ".tmp"
# Signal -> its default handler: only those are replaced (a caller's own handler stays).
_CAUGHT = (
    ("SIGTERM", signal.SIG_DFL),
    ("SIGHUP", signal.SIG_DFL),  # absent on Windows
    ("SIGINT", signal.default_int_handler),
)
_PARTIAL = re.compile(rf"\..+\.[^.]+{re.escape(PARTIAL_SUFFIX)}")
_HELD: set[Path] = set()  # the locks this process holds


class Stopped(BaseException):
    """A signal stopped the experiment: a ``BaseException``, as ``KeyboardInterrupt``, so that a
    run's ``except Exception`` does not record it as the run's own failure."""

    def __init__(self, signum: int, started: bool = True):
        super().__init__(signum, started)  # the arguments pickle it (from a spawned run)
        self.signum = signum
        self.started = started  # False: stopped before its run started

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {self.name}"


def check_output(output: str | Path) -> Path:
    """The absolute ``output`` folder; ``ValueError`` if the runs could not write there.

    Writes nothing: the nearest existing folder on the path (``output`` itself or a parent)
    must be a folder the user can write in and enter.
    """
    path = Path(output).expanduser().absolute()
    fix = "Give a folder you can write to (it is made if missing)."
    for folder in (path, *path.parents):
        if not os.path.lexists(folder):
            continue
        if not folder.is_dir():
            where = "is a file" if folder == path else f"lies under {folder}, which is a file"
            raise ValueError(f"--output {output} {where}, not a folder. {fix}")
        if not os.access(folder, os.W_OK | os.X_OK):
            where = "" if folder == path else f": its parent {folder}"
            raise ValueError(f"--output {output}{where} is not writable for you. {fix}")
        return path
    return path


class Workspace:
    """The output folder while the runs write to it (see the module docstring).

    ``with Workspace(DIR, echo) as workspace:`` makes ``DIR``, takes its lock, removes what an
    interrupted command left, points :mod:`tempfile` at ``workspace.temporary`` and turns the
    stop signals into :class:`Stopped`; on exit it removes the temporaries and the lock (and
    ``DIR`` itself if this command made it and nothing was written).
    """

    def __init__(self, output: str | Path, echo: Callable[[str], None] = print):
        self.output = Path(output)
        self.echo = echo
        self.lock = self.output / LOCK_FILE
        self.temporary = self.output / TEMPORARY_DIR
        self._created: list[Path] = []  # folders made here, innermost first
        self._locked = False
        self._handlers: dict[int, Any] = {}  # signal -> the handler it had before
        self._tempdir: tuple[str | None, str | None] | None = None  # tempfile.tempdir, TMPDIR
        self._stopping = False  # a stop signal came
        self._cleaning = False  # in __exit__
        self._deferred: int | None = None  # a signal that came while cleaning up

    def __enter__(self) -> Workspace:
        try:
            self._make_folder()
            self._take_lock()
            self._remove_leftovers()
            self.temporary.mkdir()
            self._redirect_tempfile()
            self._catch_signals()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._cleaning = True  # a signal now waits until the cleanup is done
        if self._tempdir is not None:
            tempfile.tempdir, environment = self._tempdir
            if environment is None:
                os.environ.pop("TMPDIR", None)
            else:
                os.environ["TMPDIR"] = environment
            self._tempdir = None
        if self._locked:
            shutil.rmtree(self.temporary, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.lock.unlink()
            _HELD.discard(self.lock)
            self._locked = False
        for folder in self._created:  # empty only if nothing was written
            try:
                folder.rmdir()
            except OSError:
                break
        self._created.clear()
        for signum, handler in self._handlers.items():
            signal.signal(signum, handler)
        self._handlers.clear()
        if self._deferred is not None and not any(exc):  # delivered now, as it would have been
            signal.raise_signal(self._deferred)

    # -- the folder and its lock ---------------------------------------------------------------

    def _make_folder(self) -> None:
        missing = [p for p in (self.output, *self.output.parents) if not p.exists()]
        try:
            self.output.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(
                f"--output {self.output} cannot be made: {err.strerror}. Give a folder you can "
                "write to."
            ) from None
        self._created = missing

    def _take_lock(self) -> None:
        """Create the lock with ``O_EXCL``; take over one whose process is gone."""
        for _ in range(5):
            try:
                handle = os.open(self.lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = _holder(self.lock)
                if holder is None and not self.lock.exists():  # released meanwhile
                    continue
                if holder is None or self.lock in _HELD or _alive(*holder):
                    raise ValueError(_busy_message(self.output, self.lock, holder)) from None
                self._take_over(holder)
                continue
            except OSError as err:
                raise ValueError(
                    f"--output {self.output} is not writable ({err.strerror}). Give a folder "
                    "you can write to."
                ) from None
            self._locked = True
            _HELD.add(self.lock)
            with os.fdopen(handle, "w", encoding="ascii") as file:
                file.write(f"{os.getpid()} {socket.gethostname()}\n")
            return
        raise ValueError(f"Could not take the lock {self.lock}: other commands keep taking it.")

    def _take_over(self, holder: tuple[int, str]) -> None:
        """Remove a dead process's lock; of several racing commands only one moves it aside."""
        aside = self.lock.with_name(f"{LOCK_FILE}.{os.getpid()}.old")
        try:
            os.rename(self.lock, aside)
        except FileNotFoundError:  # another command took it over first
            return
        if _holder(aside) == holder:
            aside.unlink()
            self.echo(
                f"took over the lock of pid {holder[0]} in {self.output}, which is no longer "
                "running (a killed compare or grid)"
            )
        else:  # a live command's fresh lock was moved aside: put it back
            os.rename(aside, self.lock)

    def _remove_leftovers(self) -> None:
        """What a killed command left: ``DIR/.tmp`` and half-written ``.NAME.*.partial`` files."""
        left = [self.temporary] if self.temporary.exists() else []
        runs = sorted(p for p in self.output.glob("runs/*") if p.is_dir())
        for folder in (self.output, *runs):
            left += sorted(p for p in folder.iterdir() if _PARTIAL.fullmatch(p.name))
        for path in left:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        if left:
            shown = ", ".join(str(p.relative_to(self.output)) for p in left)
            self.echo(f"removed what an interrupted command left in {self.output}: {shown}")

    # -- temporaries and signals ---------------------------------------------------------------

    def _redirect_tempfile(self) -> None:
        self._tempdir = (tempfile.tempdir, os.environ.get("TMPDIR"))
        tempfile.tempdir = str(self.temporary)
        os.environ["TMPDIR"] = str(self.temporary)  # spawned run processes

    def _catch_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for name, default in _CAUGHT:
            signum = getattr(signal, name, None)
            if signum is not None and signal.getsignal(signum) is default:
                self._handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._cleaning:  # the lock and temporaries go first
            self._deferred = self._deferred or signum
            return
        if self._stopping:  # a second signal acts at once (the next start cleans up)
            signal.signal(signum, self._handlers[signum])
            signal.raise_signal(signum)
            return
        self._stopping = True
        raise Stopped(signum)


def catch_stop_signals() -> None:
    """In a spawned run process: SIGTERM raises :class:`Stopped` during a run (whose
    ``finally`` clauses remove its temporaries; the pool sends the exception back), and after
    it the process starts no run (:func:`one_run`) until the pool's shutdown ends it."""
    signal.signal(signal.SIGTERM, _stop_runs)


@contextlib.contextmanager
def one_run():
    """Marks the block as a run, for :func:`catch_stop_signals`; raises :class:`Stopped`
    (not started) in a process that was told to stop."""
    global _in_run
    if _stopped_by is not None:
        raise Stopped(_stopped_by, started=False)
    _in_run = True
    try:
        yield
    finally:
        _in_run = False


_in_run = False  # whether a run is in progress in this (spawned) process
_stopped_by: int | None = None  # the signal that stopped this process's runs


def _stop_runs(signum: int, frame: FrameType | None) -> None:
    global _stopped_by
    if _stopped_by is not None:
        return
    _stopped_by = signum
    if _in_run:
        raise Stopped(signum)


def _busy_message(output: Path, lock: Path, holder: tuple[int, str] | None) -> str:
    if holder is None:
        who = "another compare or grid"
    elif holder[1] == socket.gethostname():
        who = f"another compare or grid (pid {holder[0]})"
    else:
        who = f"another compare or grid (pid {holder[0]} on {holder[1]})"
    return (
        f"{who} is writing to {output}: two at once would run the same runs and mix their "
        "files. Wait for it to finish (then this command skips what it finished), or give "
        f"another --output. If none is running, delete the lock file {lock}."
    )


def _holder(lock: Path) -> tuple[int, str] | None:
    """(pid, host) written in a lock file; None when it is unreadable or half written."""
    try:
        pid, host = lock.read_text(encoding="ascii", errors="replace").split()
        return int(pid), host
    except (OSError, ValueError):
        return None


def _alive(pid: int, host: str) -> bool:
    """Whether the lock's process may still run (on another host: cannot tell, so yes)."""
    if host != socket.gethostname():
        return True
    if pid == os.getpid() or pid <= 0:  # our own pid: a lock left by an earlier container
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return True
