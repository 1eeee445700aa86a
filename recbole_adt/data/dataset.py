"""ADTDataset: train and validate on every interaction, test on true positives only.

Paper section 5: "we kept all interactions, including the false-positive ones, in training and
validation, and tested the models only on true-positive interactions". The test split is filtered
in ``build()``, before RecBole builds its samplers, so the full-sort evaluation masks train and
valid items (false positives included) exactly as RecBole does, and a test false positive is an
ordinary non-hit, as in the authors' code, where such items were never in the test file.
"""

from __future__ import annotations

from recbole.data.dataset import Dataset
from recbole.utils import FeatureType, set_color

from recbole_adt.data.embedded import ensure_embedded_dataset
from recbole_adt.data.extra_feedback import select_extra_feedback


class ADTDataset(Dataset):
    def __init__(self, config):
        ensure_embedded_dataset(config)
        self.fp_field = config["fp_field"]
        super().__init__(config)
        self._check_fp_field()

    def _check_fp_field(self) -> None:
        if not self.config["clean_test"]:
            return
        if self.fp_field not in self.field2type:
            raise ValueError(
                f"clean_test needs the false-positive field {self.fp_field!r}, which dataset "
                f"{self.dataset_name!r} does not have. Loaded fields: {sorted(self.field2type)}. "
                "Add it to load_col['inter'], set fp_field to one of the loaded float fields, "
                "or set clean_test: False."
            )
        if self.field2type[self.fp_field] != FeatureType.FLOAT:
            raise ValueError(
                f"The false-positive field {self.fp_field!r} must be declared "
                f"'{self.fp_field}:float' in the atomic file header, not "
                f"{self.field2type[self.fp_field].value!r}."
            )

    def build(self):
        datasets = super().build()
        train = datasets[0]
        # D* (extra feedback) comes from the training split alone; models and trainers read it here.
        train.extra_feedback = select_extra_feedback(self.config, train)
        if train.extra_feedback is not None:
            described = train.extra_feedback.describe()
            self.logger.info(set_color("Extra feedback D*", "pink") + f": {described}")
        if not self.config["clean_test"]:
            return datasets
        *train_valid, test = datasets
        is_clean = test.inter_feat[self.fp_field] < 0.5
        self.logger.info(
            set_color("Clean test", "pink")
            + f": kept {int(is_clean.sum())} true positives of {len(is_clean)} test interactions"
        )
        return [*train_valid, test.copy(test.inter_feat[is_clean])]
