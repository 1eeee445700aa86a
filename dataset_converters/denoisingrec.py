"""The paper authors' preprocessed splits (DenoisingRec): ``NAME.train.rating``,
``NAME.valid.rating`` and ``NAME.test.negative`` in one folder.

Train and valid lines are ``user<TAB>item<TAB>flag`` with **flag 1 = true positive** (the
authors' loader calls the column "noisy", which is misleading), so ``false_positive = 1 - flag``.
A flag column holding another number (a 1-5 rating, say) is refused rather than read: rows
rated 1 would become clean positives and the rest would be dropped.
Test lines hold clean positives only: ``user<TAB>item``, or in Adressa's copy a ``(u, i)`` tuple
as the first field; further fields (sampled negatives) are ignored. CRLF endings and a missing
final newline are fine. The split is kept as it is: the output is ``NAME.train.inter``,
``NAME.valid.inter`` and ``NAME.test.inter`` for RecBole's ``benchmark_filename``. As in the
paper's Table 2, ``interactions`` and ``false_positives`` count the training file, and users and
items are counted over all three splits.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from .base import (
    FLAG,
    TP,
    BaseOptions,
    ConversionError,
    LineLog,
    Staging,
    check_name,
    dataset_files,
    head,
    header,
    line_batches,
    log_stats,
    options_dict,
    stats_bytes,
    summary,
    write_interactions,
)

NAME = "denoisingrec"
HELP = "the paper authors' NAME.train.rating / .valid.rating / .test.negative (kept split)"
OPTIONS = BaseOptions  # the split is the authors': no dedupe or k-core
SPLITS = {"train": "train.rating", "valid": "valid.rating", "test": "test.negative"}
NOT_A_FLAG = (
    "the third column holds {}, but in the authors' files it is a 0/1 flag (1 = clean, 0 = "
    "false positive); this looks like a file of ratings, which would be mislabelled. Convert "
    "ratings with the ml-100k converter (a RecBole .inter file) or amazon --format 2014-csv "
    "(user,item,rating,timestamp), where rating < 3 is a false positive, or write the flag "
    "yourself (1 if rating >= 3 else 0)"
)
Row3 = tuple[bytes, bytes, bytes]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """No options beyond the common ones; ``--name`` picks the dataset if the folder has several."""


def _id(token: bytes) -> bytes:
    token = token.strip()
    if not token.isdigit():
        raise ValueError(f"not a non-negative integer id: {token[:20].decode(errors='replace')!r}")
    return b"%d" % int(token)


def _labelled(line: bytes) -> Row3:
    """``user item flag`` (flag 1 = clean) as a row with the false-positive flag.

    Raises ValueError for a malformed line, and ConversionError for a number other than 0 and 1
    in the flag column: that is a file of ratings, which would be silently mislabelled.
    """
    parts = line.split()
    if len(parts) != 3:
        raise ValueError("expected user, item and a 0/1 flag")
    flag = parts[2]
    if flag not in (b"0", b"1"):
        shown = flag[:20].decode(errors="replace")
        try:
            value = float(flag)
        except ValueError:
            raise ValueError(f"flag {shown!r} is not 0 or 1") from None
        if value not in (0.0, 1.0):  # 3, 4.5, nan: not a flag
            raise ConversionError(NOT_A_FLAG.format(shown))
        flag = b"1" if value else b"0"
    return _id(parts[0]), _id(parts[1]), FLAG[flag == b"0"]


def _test(line: bytes) -> Row3:
    """``user item [negatives...]`` or ``(user, item) [negatives...]``: a clean positive."""
    line = line.strip()
    if line.startswith(b"("):
        end = line.find(b")")
        pair = line[1:end].split(b",") if end > 0 else []
        if len(pair) != 2:
            raise ValueError("expected a (user, item) tuple")
        return _id(pair[0]), _id(pair[1]), TP
    parts = line.split()
    if len(parts) < 2:
        raise ValueError("expected user and item")
    return _id(parts[0]), _id(parts[1]), TP


def _rows(path: Path, split: str, log: LineLog) -> Iterator[list[Row3]]:
    parse = _test if split == "test" else _labelled
    for first, lines in line_batches(path):
        rows: list[Row3] = []
        for lineno, line in enumerate(lines, first):
            try:
                rows.append(parse(line))
            except ConversionError as exc:
                raise ConversionError(f"{path}:{lineno}: {exc}") from None
            except ValueError as exc:
                if line.strip():
                    log.bad(path, lineno, str(exc))
                else:
                    log.skip("blank")
        log.lines += len(lines)
        yield rows


def _check_format(path: Path, split: str) -> None:
    parse = _test if split == "test" else _labelled
    lines = head(path)
    for line in lines:
        try:
            parse(line)
            return
        except ConversionError as exc:
            raise ConversionError(f"{path}: {exc}") from None
        except ValueError:
            continue
    shape = "user item" if split == "test" else "user item flag"
    raise ConversionError(
        f"{path} is not in the authors' {split} format ({shape}, tab-separated); "
        f"first line: {lines[0][:60]!r}"
    )


def find_splits(folder: Path, name: str | None) -> tuple[str, dict[str, Path]]:
    """The dataset prefix and its three files in ``folder``."""
    if not folder.is_dir():
        raise ConversionError(
            f"denoisingrec --input takes the folder holding NAME.train.rating, "
            f"NAME.valid.rating and NAME.test.negative; got {folder}"
        )
    prefixes = sorted(p.name[: -len(".train.rating")] for p in folder.glob("*.train.rating"))
    if name in prefixes:
        prefix = name
    elif len(prefixes) == 1:
        prefix = prefixes[0]
    elif not prefixes:
        raise ConversionError(f"no NAME.train.rating file in {folder}")
    else:
        raise ConversionError(f"{folder} holds several datasets {prefixes}: choose one with --name")
    files = {split: folder / f"{prefix}.{suffix}" for split, suffix in SPLITS.items()}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise ConversionError(f"missing input file(s): {', '.join(missing)}")
    return prefix, files


def convert(
    inputs: Sequence[str | os.PathLike[str]],
    output_dir: str | os.PathLike[str],
    name: str | None,
    opts: BaseOptions,
    force: bool,
) -> dict[str, Any]:
    if len(inputs) != 1:
        raise ConversionError("denoisingrec takes one --input folder")
    prefix, files = find_splits(Path(inputs[0]), name)
    name = name or prefix
    check_name(name)
    directory = Path(output_dir) / name
    outputs = {split: f"{name}.{split}.inter" for split in SPLITS}
    stats_file = f"{name}.stats.json"
    for split, path in files.items():
        _check_format(path, split)
    log = LineLog(opts.strict)
    columns = header(None, timestamp=False)
    splits: dict[str, dict[str, int]] = {}
    users: set[bytes] = set()
    items: set[bytes] = set()
    targets = [*outputs.values(), stats_file]
    with Staging(directory, targets, force, dataset_files(name)) as staging:
        for split, path in files.items():
            out = staging.open(outputs[split])
            out.write(columns)
            counts, _ = write_interactions(_rows(path, split, log), out, staging, opts)
            if counts.interactions == 0:
                raise ConversionError(f"no interactions in {path}")
            splits[split] = summary(counts)
            users |= counts.users
            items |= counts.items
        stats: dict[str, Any] = {
            "dataset": name,
            "source": NAME,
            "users": len(users),
            "items": len(items),
            "interactions": splits["train"]["interactions"],
            "false_positives": splits["train"]["false_positives"],
            "interactions_counted_over": "train",
            "splits": splits,
            "inputs": [str(p) for p in files.values()],
            "options": options_dict(opts),
            "columns": columns.decode().split(),
            "files": list(outputs.values()),
        }
        stats = log_stats(stats, log)
        staging.open(stats_file).write(stats_bytes(stats))
        staging.commit()
    return stats
