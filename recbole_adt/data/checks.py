"""Checks on a dataset's files and splits that RecBole does not make, or makes too late.

Each raises a ``ValueError`` that names the file or split, what is wrong and the fix:

- the dataset folder or an ``.inter`` file is missing, or its header is not ``name:type`` pairs;
- the false-positive flag holds values other than 0 and 1, or empty cells, which RecBole's
  ``_fill_nan`` would silently replace with the column mean (checked on the raw file);
- a numeric field the run reads (the extra-feedback field, ``rating``, ``label``) holds NaN, an
  empty cell or an infinite value: ``_fill_nan`` would replace the first two by the column mean,
  and an infinity turns the normalised column, or the loss, into NaN;
- a split is empty, or the clean test split keeps no interaction at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import recbole
import yaml
from recbole.utils import FeatureType

from recbole_adt.data.embedded import EMBEDDED_DATASET

_FEATURE_TYPES = tuple(feature_type.value for feature_type in FeatureType)
_SHOWN = 3  # bad values and rows quoted in a message


def inter_files(config) -> list[str]:
    """The ``.inter`` files RecBole reads for ``config``: one, or one per benchmark split."""
    folder, name = config["data_path"], config["dataset"]
    parts = config["benchmark_filename"]
    if parts:
        return [os.path.join(folder, f"{name}.{part}.inter") for part in parts]
    return [os.path.join(folder, f"{name}.inter")]


def check_dataset_files(config) -> None:
    """``ValueError`` if the dataset folder, an ``.inter`` file or its header is wrong."""
    name, folder = config["dataset"], config["data_path"]
    if name == EMBEDDED_DATASET and not config["benchmark_filename"]:
        return  # converted on first use
    if name == EMBEDDED_DATASET and not os.path.isfile(inter_files(config)[0]):
        raise ValueError(
            f"benchmark_filename {config['benchmark_filename']} asks for split files of the "
            f"embedded {EMBEDDED_DATASET}, which has one file and is split by eval_args. Leave "
            "benchmark_filename out, or give --dataset=NAME --data_path=DIR for a dataset "
            "converted with its splits (python -m dataset_converters SOURCE --input ... "
            "--output-dir DIR)."
        )
    if not os.path.isdir(folder):
        if name in _recbole_download_names() and not config["clean_test"]:
            return  # RecBole offers to download its own copy
        raise ValueError(
            f"Unknown dataset {name!r}: there is no folder {folder}. Give --data_path=DIR where "
            f"DIR/{name}/{name}.inter exists, convert raw data first (python -m "
            "dataset_converters SOURCE --input ... --output-dir DIR), or leave --dataset out to "
            f"use the embedded {EMBEDDED_DATASET}."
        )
    files = inter_files(config)
    missing = [path for path in files if not os.path.isfile(path)]
    if missing:
        present = sorted(path.name for path in Path(folder).glob("*.inter"))
        split_hint = (
            "; benchmark_filename names the split files <dataset>.<part>.inter"
            if config["benchmark_filename"]
            else ""
        )
        raise ValueError(
            f"Dataset {name!r} has no {', '.join(missing)}. The folder holds "
            f"{', '.join(present) or 'no .inter file'}: the dataset name must match the file "
            f"name{split_hint}."
        )
    for path in files:
        check_header(path, config["field_separator"], config["encoding"])


def check_header(path: str, separator: str = "\t", encoding: str | None = None) -> None:
    """The first line must be ``name:type`` columns, each type one of RecBole's."""
    encoding = encoding or "utf-8"
    try:
        with open(path, encoding=encoding) as file:
            header = file.readline().rstrip("\r\n")
    except UnicodeDecodeError as err:
        raise ValueError(
            f"{path} is not {encoding} text ({err.reason} at byte {err.start}): convert it "
            "to UTF-8, or set encoding to the file's encoding."
        ) from err
    if not header.strip():
        raise ValueError(
            f"{path} is empty or starts with a blank line: its first line must name the "
            "columns, e.g. user_id:token<TAB>item_id:token<TAB>false_positive:float."
        )
    for number, column in enumerate(header.split(separator), start=1):
        field, colon, kind = column.partition(":")
        if not colon or not field or kind not in _FEATURE_TYPES:
            separated = "tab" if separator == "\t" else repr(separator)
            raise ValueError(
                f"The header of {path} must be {separated}-separated name:type columns with "
                f"types {', '.join(_FEATURE_TYPES)}; column {number} is {column!r}. Example: "
                "user_id:token<TAB>item_id:token<TAB>false_positive:float."
            )


def check_flag_values(frame, field: str, files: list[str], sizes: list[int]) -> None:
    """``ValueError`` unless every raw value of the flag ``field`` is 0 or 1.

    ``frame`` holds the rows of ``files`` in order, ``sizes[k]`` of them from ``files[k]``.
    """
    values = frame[field]
    empty = values.isna()
    other = ~empty & ~values.isin([0.0, 1.0])
    if not (empty.any() or other.any()):
        return
    problems = []
    if other.any():
        distinct = sorted(set(values[other].tolist()))
        shown = ", ".join(f"{value:g}" for value in distinct[:_SHOWN])
        more = f" and {len(distinct) - _SHOWN} more" if len(distinct) > _SHOWN else ""
        problems.append(f"{_count(int(other.sum()), 'row')} with other values ({shown}{more})")
    if empty.any():
        problems.append(f"{_count(int(empty.sum()), 'empty cell')}")
    rows = [int(row) for row in (empty | other).to_numpy().nonzero()[0][:_SHOWN]]
    raise ValueError(
        f"The false-positive flag {field!r} must be 0 (true positive) or 1 (false positive) in "
        f"every interaction, but it has {' and '.join(problems)}, first at "
        f"{', '.join(_where(row, files, sizes) for row in rows)}. RecBole would fill empty cells "
        "with the column mean, and the clean test keeps anything below 0.5, so this run stops. "
        "Fix the file (or convert the raw data again), or set fp_field to the flag column; "
        "data without a flag needs clean_test: False."
    )


def check_finite_fields(frame, fields: list[str], files: list[str], sizes: list[int]) -> None:
    """``ValueError`` unless every raw value of each float column in ``fields`` is finite.

    ``frame`` holds the rows of ``files`` in order, ``sizes[k]`` of them from ``files[k]``;
    fields that ``frame`` lacks are skipped.
    """
    for field in dict.fromkeys(fields):
        if field not in frame:
            continue
        values = frame[field].to_numpy(dtype="float64", na_value=float("nan"))
        empty, infinite = np.isnan(values), np.isinf(values)
        if not (empty.any() or infinite.any()):
            continue
        problems = []
        if empty.any():
            problems.append(_count(int(empty.sum()), "empty or NaN cell"))
        if infinite.any():
            problems.append(_count(int(infinite.sum()), "infinite value"))
        rows = [int(row) for row in (empty | infinite).nonzero()[0][:_SHOWN]]
        raise ValueError(
            f"The numeric field {field!r} must be a finite number in every interaction, but it "
            f"has {' and '.join(problems)}, first at "
            f"{', '.join(_where(row, files, sizes) for row in rows)}. RecBole would fill empty "
            "and NaN cells with the column mean, and an infinite value makes the loss NaN, so "
            "this run stops. Fix those rows (or drop them) in the file, or convert the raw data "
            "again."
        )


def check_splits(datasets, names: list[str], dataset_name: str) -> None:
    """``ValueError`` if a built split (train, valid, test) holds no interaction."""
    for split, name in zip(datasets, names):
        if len(split) == 0:
            raise ValueError(
                f"The {name} split of dataset {dataset_name!r} is empty. Give it interactions: "
                "with benchmark_filename, the split file must hold rows; otherwise check "
                "eval_args (e.g. split: {RS: [0.8, 0.1, 0.1]}) against the data size."
            )


def check_clean_test(kept: int, total: int, config) -> None:
    """``ValueError`` if the clean test split keeps none of the test interactions."""
    if kept:
        return
    field = config["fp_field"]
    raise ValueError(
        f"The clean test split is empty: all {total} test interactions of dataset "
        f"{config['dataset']!r} (seed {config['seed']}) are false positives ({field} = 1), so "
        f"there is nothing to test on. Check that {field} is 1 for false positives and 0 for "
        "true positives (not the reverse), give the test split true positives, or set "
        "clean_test: False to test on every interaction."
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _where(row: int, files: list[str], sizes: list[int]) -> str:
    for path, size in zip(files, sizes):
        if row < size:
            return f"{os.path.basename(path)} data row {row + 1}"
        row -= size
    return f"data row {row + 1}"


def _recbole_download_names() -> set[str]:
    url_file = Path(recbole.__file__).parent / "properties" / "dataset" / "url.yaml"
    try:
        return set(yaml.safe_load(url_file.read_text()) or {})
    except (OSError, yaml.YAMLError):
        return set()
