"""Datasets: the clean-test split and the embedded default dataset."""

from recbole_adt.data.dataset import ADTDataset
from recbole_adt.data.embedded import EMBEDDED_DATASET, ensure_embedded_dataset

__all__ = ["ADTDataset", "EMBEDDED_DATASET", "ensure_embedded_dataset"]
