"""Turn raw recommendation dumps into RecBole atomic files that carry a false-positive flag.

Every converter writes ``DIR/NAME/NAME.inter`` (or the authors' three split files) with a
``false_positive:float`` column (1.0 = false positive, labelled as in the paper's section 5) and
``DIR/NAME/NAME.stats.json``. Use the CLI (``python -m dataset_converters --help``) or
:func:`convert`. Output is all or nothing, and bad input is refused or counted, never labelled:
see :mod:`dataset_converters.base` for the policies (value ranges, ids that are not UTF-8,
locks and interrupted runs).
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

from . import adressa, amazon, denoisingrec, ml100k, yelp
from .base import ConversionError, Terminated, make_options

__all__ = ["SOURCES", "ConversionError", "Terminated", "convert"]

SOURCES: dict[str, ModuleType] = {m.NAME: m for m in (adressa, amazon, yelp, denoisingrec, ml100k)}


def convert(
    source: str,
    inputs: list[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    *,
    name: str | None = None,
    force: bool = False,
    **options: Any,
) -> dict[str, Any]:
    """Convert ``inputs`` of ``source`` into ``output_dir/NAME/`` and return the stats.

    Parameters
    ----------
    source
        One of :data:`SOURCES`: ``adressa``, ``amazon``, ``yelp``, ``denoisingrec``, ``ml-100k``.
    inputs
        Raw files (or, for ``adressa`` and ``denoisingrec``, the folder holding them).
    output_dir
        Parent folder; the files go to ``output_dir/NAME/``.
    name
        Dataset name; defaults to the source name (``ml-100k-fp`` for ``ml-100k``, the file
        prefix for ``denoisingrec``).
    force
        Replace an existing dataset ``NAME`` whole: its files that this conversion does not
        write (``NAME.inter``, ``NAME.<part>.inter``, of another shape) are removed.
    **options
        The source's options, named as the CLI's long flags with ``_`` for ``-`` (``strict``,
        ``dedupe``, ``kcore``, ``format``, ``business``, ``categories``,
        ``missing_active_time``).

    Returns
    -------
    dict
        The content of ``NAME.stats.json``.

    Raises
    ------
    FileExistsError
        The output exists and ``force`` is false.
    ValueError
        Unknown source or option, unusable input, or another conversion writing to the same
        folder (:class:`ConversionError`).
    Terminated
        SIGTERM or SIGHUP arrived (in the main thread); like KeyboardInterrupt, it is raised
        after the temporary files are removed.
    """
    module = SOURCES.get(source)
    if module is None:
        raise ConversionError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    opts = make_options(module.OPTIONS, options)
    return module.convert(list(inputs), output_dir, name, opts, force)
