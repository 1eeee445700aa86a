"""Where a run writes: one root for RecBole's log and tensorboard folders, checkpoints, diagnostics.

RecBole writes ``log/<model>/<name>.log`` (``init_logger``), ``log_tensorboard/<name>/``
(``get_tensorboard``) and ``checkpoint_dir`` (``saved/``) relative to the working folder, the
first two with the folder names fixed in its code. ``output_dir`` (:class:`OutputSettings`)
moves all of them:

- ``output_dir: ~`` (the default): the working folder, RecBole's familiar layout (``log/``,
  ``log_tensorboard/``, ``saved/``, and ``diagnostics_dir`` where it points). A run writes
  nothing else there.
- ``output_dir: DIR``: ``DIR/log/``, ``DIR/log_tensorboard/``, and a relative
  ``checkpoint_dir`` or ``diagnostics_dir`` under ``DIR`` (``DIR/saved/`` by default). An absolute
  one stays where it points. A relative ``DIR`` is relative to the working folder the run starts
  in. Nothing is written outside ``DIR`` (except to absolute paths given).

RecBole's two fixed folders are made with the working folder changed to ``DIR`` for the calls
that make them only (:func:`inside`): ``init_logger``'s file handler keeps an absolute path, and
the trainer's tensorboard writer, which reopens its relative path at every flush, is replaced
right away by one at the absolute path of the same folder (:func:`anchor_tensorboard`).

``keep_checkpoints``: a run keeps its selected checkpoint (the last phase's, the one it tests);
with ``keep_checkpoints: True`` also every earlier phase's (``...-warmup.pth``, ``...-adt.pth``).
The earlier ones are removed only after the run has ended well: ``--resume`` reads them while
it trains.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import ClassVar

# RecBole's tensorboard event files: events.out.tfevents.<time>.<host>.<pid>.<n>
_EVENT_FILE_PREFIX = "events.out.tfevents."


@dataclasses.dataclass(frozen=True)
class OutputSettings:
    """The parsed ``output_dir`` and ``keep_checkpoints``.

    ``output_dir`` is None for the working folder (RecBole's layout), else an absolute path
    (made absolute against the working folder when the settings are parsed).
    """

    KEYS: ClassVar[tuple[str, ...]] = ("output_dir", "keep_checkpoints")

    output_dir: str | None
    keep_checkpoints: bool = False

    @classmethod
    def from_config(cls, config) -> OutputSettings:
        directory = config["output_dir"] if "output_dir" in config else None
        if directory is not None and not (isinstance(directory, str) and directory.strip()):
            raise ValueError(
                f"output_dir must be a folder path, or empty (~) for the working folder, got "
                f"{directory!r}: e.g. --output_dir=runs/gmf-tce. Everything the run writes "
                "(log/, log_tensorboard/, checkpoints, diagnostics) goes under it."
            )
        keep = config["keep_checkpoints"] if "keep_checkpoints" in config else False
        if not isinstance(keep, bool):
            raise ValueError(
                f"keep_checkpoints must be True or False, got {keep!r}: True keeps every "
                "phase's checkpoint of a run, False (the default) only the selected one, "
                "e.g. --keep_checkpoints=True."
            )
        if directory is not None:
            directory = os.path.abspath(os.path.expanduser(directory))
        return cls(directory, keep)

    def resolve(self, path: str | None) -> str | None:
        """``path`` under ``output_dir`` when it is relative and ``output_dir`` is set."""
        if path is None or self.output_dir is None:
            return path
        path = os.path.expanduser(path)
        return path if os.path.isabs(path) else os.path.join(self.output_dir, path)


def prepare_output_dir(settings: OutputSettings) -> None:
    """Make ``output_dir`` (with its parents); ``ValueError`` if it cannot hold the run's files.

    Checked before the run writes anything, so a bad folder fails at once, not at the first
    log line or checkpoint.
    """
    directory = settings.output_dir
    if directory is None:
        return
    fix = "Give a folder you can write to, e.g. --output_dir=runs/first (or leave it out)."
    if os.path.exists(directory) and not os.path.isdir(directory):
        raise ValueError(f"output_dir {directory} is a file, not a folder. {fix}")
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as err:
        raise ValueError(
            f"output_dir {directory} cannot be created: {err.strerror}. {fix}"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"output_dir {directory} is not writable. {fix}")


@contextlib.contextmanager
def inside(directory: str | None) -> Iterator[None]:
    """The working folder changed to ``directory`` for the block (nothing when it is None).

    Only around RecBole calls that write to fixed relative folders; every path they keep must
    be absolute afterwards (see :func:`anchor_tensorboard`).
    """
    if directory is None:
        yield
        return
    before = os.getcwd()
    os.chdir(directory)
    try:
        yield
    finally:
        os.chdir(before)


def anchor_tensorboard(trainer, directory: str | None) -> None:
    """Replace a writer that RecBole made (relative, inside ``directory``) by an absolute one.

    Call inside :func:`inside` ``(directory)``, right after the trainer is made. The tensorboard
    writer reopens its relative file at every flush, so after the working folder changes back
    it would write into the working folder. The old writer's single event file (its version
    record) is removed; the new writer writes to the same folder.
    """
    writer = getattr(trainer, "tensorboard", None)  # RecBole's Trainer; some trainers have none
    if directory is None or writer is None:
        return
    from torch.utils.tensorboard import SummaryWriter

    folder = os.path.join(directory, writer.get_logdir())
    writer.close()
    own = f".{os.getpid()}."
    for name in os.listdir(folder):
        if name.startswith(_EVENT_FILE_PREFIX) and own in name:
            os.unlink(os.path.join(folder, name))
    trainer.tensorboard = SummaryWriter(folder)
