"""The embedded default dataset: RecBole's bundled MovieLens-100K with a false-positive flag.

RecBole's wheel ships ``dataset_example/ml-100k``. On first use it is converted once, with
rating < 3 flagged as false positive (the paper's rule for Amazon and Yelp), into
``<data_path>/ml-100k-fp/``. A new name is needed: ``dataset=ml-100k`` makes RecBole read its own
folder and rescale every float field.
"""

from __future__ import annotations

import os
import time
from logging import getLogger
from pathlib import Path

import recbole

EMBEDDED_DATASET = "ml-100k-fp"


def bundled_ml100k() -> Path:
    return Path(recbole.__file__).parent / "dataset_example" / "ml-100k" / "ml-100k.inter"


def ensure_embedded_dataset(config) -> None:
    """Convert the bundled file if ``config`` asks for the embedded dataset and it is missing."""
    if config["dataset"] != EMBEDDED_DATASET or config["benchmark_filename"]:
        return
    dataset_dir = Path(config["data_path"])
    if (dataset_dir / f"{EMBEDDED_DATASET}.inter").exists():
        return
    from dataset_converters import convert

    logger = getLogger()
    logger.info(
        f"First use of {EMBEDDED_DATASET}: converting RecBole's bundled MovieLens-100K "
        f"({bundled_ml100k()}) into {dataset_dir}, rating < 3 = false positive."
    )
    try:
        stats = convert(
            "ml-100k", [bundled_ml100k()], os.fspath(dataset_dir.parent), name=EMBEDDED_DATASET
        )
    except FileExistsError:
        logger.info(f"{EMBEDDED_DATASET} was converted meanwhile by another run.")
        return  # its write was atomic
    except ValueError:
        if not _wait_for_other_conversion(dataset_dir):
            raise
        logger.info(f"{EMBEDDED_DATASET} was converted meanwhile by another run.")
        return
    logger.info(
        f"Wrote {dataset_dir / f'{EMBEDDED_DATASET}.inter'}: {stats.get('interactions')} "
        f"interactions, {stats.get('false_positives')} false positives."
    )


def _wait_for_other_conversion(dataset_dir: Path, timeout: float = 120.0) -> bool:
    """Whether a conversion holding the folder's lock finished writing the dataset in time."""
    target = dataset_dir / f"{EMBEDDED_DATASET}.inter"
    deadline = time.monotonic() + timeout
    while any(dataset_dir.glob(".*.lock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    return target.exists()
