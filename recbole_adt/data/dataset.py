"""ADTDataset: train and validate on every interaction, test on true positives only.

Paper section 5: "we kept all interactions, including the false-positive ones, in training and
validation, and tested the models only on true-positive interactions". The test split is filtered
in ``build()``, before RecBole builds its samplers, so the full-sort evaluation masks train and
valid items (false positives included) exactly as RecBole does, and a test false positive is an
ordinary non-hit, as in the authors' code, where such items were never in the test file.

With ``noise_rate`` > 0 the training split gets seeded, flagged false positives
(:mod:`recbole_adt.data.noise_injection`) before anything reads it. The training split also
carries :attr:`ADTDataset.extra_feedback`, the extra feedback :math:`D^*`
(:mod:`recbole_adt.data.extra_feedback`), when the run uses it.
"""

from __future__ import annotations

import pandas as pd
from recbole.data.dataset import Dataset
from recbole.data.interaction import Interaction
from recbole.utils import FeatureSource, FeatureType, set_color

from recbole_adt.data.checks import (
    check_clean_test,
    check_dataset_files,
    check_finite_fields,
    check_flag_values,
    check_splits,
    inter_files,
)
from recbole_adt.data.embedded import ensure_embedded_dataset
from recbole_adt.data.extra_feedback import (
    ExtraFeedback,
    ExtraFeedbackSettings,
    extra_feedback_users,
    missing_extra_feedback,
    select_extra_feedback,
)
from recbole_adt.data.noise_injection import (
    NoiseInjection,
    inject,
    injected_columns,
    observed_pair_keys,
)
from recbole_adt.data.shared_pairs import apply_shared_pairs_policy
from recbole_adt.settings import parsed


class ADTDataset(Dataset):
    # D* of the training split, set by build() when the run uses it; None on the other splits
    # (and on the dataset before the split). RecBole's copy() carries it to copies of a split.
    extra_feedback: ExtraFeedback | None = None

    def __init__(self, config):
        ensure_embedded_dataset(config)
        check_dataset_files(config)
        self.fp_field = config["fp_field"]
        super().__init__(config)
        self._check_fp_field()

    def _load_inter_feat(self, token, dataset_path):
        """RecBole's, then the raw flag is checked: ``_fill_nan`` would hide its empty cells."""
        files = inter_files(self.config)
        try:
            super()._load_inter_feat(token, dataset_path)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as err:
            raise ValueError(
                f"Could not read {', '.join(files)}: {err}. Each row needs one value per header "
                "column, separated like the header, and name:float columns hold numbers."
            ) from err
        if self.inter_feat is None or len(self.inter_feat) == 0:
            raise ValueError(f"{', '.join(files)} holds no interactions, only a header.")
        sizes = getattr(self, "file_size_list", None) or [len(self.inter_feat)]
        if self.field2type.get(self.fp_field) == FeatureType.FLOAT:
            check_flag_values(self.inter_feat, self.fp_field, files, sizes)
        numeric = [
            parsed(self.config, ExtraFeedbackSettings).field,
            self.config["RATING_FIELD"],
            self.config["LABEL_FIELD"],
        ]
        floats = [f for f in numeric if f and self.field2type.get(f) == FeatureType.FLOAT]
        check_finite_fields(self.inter_feat, floats, files, sizes)
        if parsed(self.config, NoiseInjection).enabled and self.fp_field not in self.field2type:
            # Data without a flag: every observed interaction is a true positive.
            self.inter_feat[self.fp_field] = 0.0
            self.set_field_property(self.fp_field, FeatureType.FLOAT, FeatureSource.INTERACTION, 1)

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
        parts = self.benchmark_filename_list
        check_splits(datasets, list(parts or ["train", "valid", "test"]), self.dataset_name)
        if parts is not None:
            datasets = apply_shared_pairs_policy(datasets, list(parts), self.config["shared_pairs"])
        datasets[0] = self._inject_noise(datasets[0])
        # D* comes from the training split alone; models and trainers read it there.
        datasets[0].extra_feedback = self._extra_feedback(datasets[0])
        if not self.config["clean_test"]:
            return datasets
        *train_valid, test = datasets
        is_clean = test.inter_feat[self.fp_field] < 0.5
        self.logger.info(
            set_color("Clean test", "pink")
            + f": kept {int(is_clean.sum())} true positives of {len(is_clean)} test interactions"
        )
        check_clean_test(int(is_clean.sum()), len(is_clean), self.config)
        return [*train_valid, test.copy(test.inter_feat[is_clean])]

    def _inject_noise(self, train):
        """The training split with the injected false positives (logged), or as it is."""
        settings = parsed(self.config, NoiseInjection)
        if not settings.enabled:
            return train
        feat, uid, iid = train.inter_feat, self.uid_field, self.iid_field
        injected = inject(
            settings,
            feat[uid].numpy(),
            feat[iid].numpy(),
            observed_pair_keys(self.inter_feat[uid], self.inter_feat[iid], self.item_num),
            n_users=self.user_num,
            n_items=self.item_num,
        )
        self.logger.info(set_color("Noise injection", "pink") + f": {injected.describe()}")
        columns = {name: feat[name] for name in feat.columns}
        merged = injected_columns(
            columns, injected, uid_field=uid, iid_field=iid, fp_field=self.fp_field
        )
        return train.copy(Interaction(merged))

    def _extra_feedback(self, train) -> ExtraFeedback | None:
        """D* of the training split if the run uses it (logged), else None."""
        users = extra_feedback_users(self.config)
        if not users:
            return None
        extra = select_extra_feedback(
            parsed(self.config, ExtraFeedbackSettings), train, fp_field=self.fp_field
        )
        if extra is None or len(extra) == 0:
            raise ValueError(missing_extra_feedback(" and ".join(users), self.dataset_name, extra))
        self.logger.info(set_color("Extra feedback D*", "pink") + f": {extra.describe()}")
        return extra
