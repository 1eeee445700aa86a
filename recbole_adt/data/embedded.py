"""The embedded default dataset: RecBole's bundled MovieLens-100K with a false-positive flag.

RecBole's wheel ships ``dataset_example/ml-100k``. On first use it is converted once, with
rating < 3 flagged as false positive (the paper's rule for Amazon and Yelp), into
``<data_path>/ml-100k-fp/``. A new name is needed: ``dataset=ml-100k`` makes RecBole read its own
folder and rescale every float field.
"""

from __future__ import annotations

import os
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

    try:
        convert("ml-100k", [bundled_ml100k()], os.fspath(dataset_dir.parent), name=EMBEDDED_DATASET)
    except FileExistsError:
        pass  # another process converted it first; its write was atomic
