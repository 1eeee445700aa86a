"""RecBole's Config, plus this plugin's defaults and the ADT settings checked up front.

Layering stays RecBole's: its internal yaml files, then ours (``properties/overall.yaml``,
``properties/model/<Model>.yaml``, ``properties/dataset/<dataset>.yaml`` inside this package),
then the user's config files, ``config_dict`` and command line, which always win.
"""

from __future__ import annotations

import os

import recbole
from recbole.config import Config as RecBoleConfig

from recbole_adt.data.embedded import EMBEDDED_DATASET
from recbole_adt.data.extra_feedback import ExtraFeedbackSettings
from recbole_adt.data.noise_injection import NoiseInjection
from recbole_adt.denoisers import DENOISER_SETTINGS
from recbole_adt.diagnostics import DiagnosticsSettings
from recbole_adt.distributed import check_distributed_settings, join_cpu_group, uses_gpus
from recbole_adt.inference.colliding import CollidingSettings
from recbole_adt.known_settings import (
    check_eval_mode,
    check_known_settings,
    check_model_fits_defaults,
    known_saved_settings,
    warn_unread_settings,
)
from recbole_adt.losses import LossChoice, NRWeights
from recbole_adt.model import MODELS
from recbole_adt.model.extra_feedback import trains_on_extra_feedback
from recbole_adt.model.nmtr import NMTRSettings
from recbole_adt.output import OutputSettings
from recbole_adt.phases import PhaseSettings
from recbole_adt.schedule import DropSchedule
from recbole_adt.settings import check_run_settings, literal_setting, parsed, read_config_file
from recbole_adt.trainer.full_sort import EvalMemoryBudget
from recbole_adt.trainer.selection import CheckpointRule
from recbole_adt.utils import get_model, model_for_loss

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")
RECBOLE_PROPERTIES_DIR = os.path.join(
    os.path.dirname(os.path.abspath(recbole.__file__)), "properties"
)


# The settings owners (settings.SettingsOwner), parsed once, in this order, by every Config.
# Add an owner here; everything else reads its parsed object with settings.parsed(config, Owner).
SETTINGS_OWNERS: tuple[type, ...] = (
    LossChoice,
    DropSchedule,
    *DENOISER_SETTINGS,  # each denoiser's (recbole_adt.denoisers)
    NRWeights,
    PhaseSettings,
    CheckpointRule,
    CollidingSettings,
    ExtraFeedbackSettings,
    DiagnosticsSettings,
    OutputSettings,
    NMTRSettings,
    EvalMemoryBudget,
    NoiseInjection,
)


class Config(RecBoleConfig):
    parsed_settings: dict[type, object]  # owner class -> its parsed, frozen settings

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        self.parsed_settings = {}
        super().__init__(model, dataset, config_file_list, config_dict)
        self._parse_owned_settings()
        self._check_adt_settings()
        warn_unread_settings(self)  # known settings this run's model or loss never reads

    def _parse_owned_settings(self) -> None:
        """Each owner parses and validates its keys once; a bad value is a ValueError."""
        for owner in SETTINGS_OWNERS:
            self.parsed_settings[owner] = owner.from_config(self)

    def _load_config_files(self, file_list):
        """RecBole's, but a missing, malformed or non-mapping file is a ValueError naming it."""
        settings = {}
        for file in file_list or []:
            found = read_config_file(file, self.yaml_loader)
            check_known_settings(found, f"config file {os.fspath(file)!r}", SETTINGS_OWNERS)
            settings.update(found)
        return settings

    @staticmethod
    def saved_settings(settings: dict, source: str) -> dict:
        """A checkpoint's saved settings less the names no longer known, which its run ignored."""
        return known_saved_settings(settings, source, SETTINGS_OWNERS)

    def _load_variable_config_dict(self, config_dict):
        check_known_settings(config_dict or {}, "config_dict", SETTINGS_OWNERS)
        return super()._load_variable_config_dict(config_dict)

    def _load_cmd_line(self):
        settings = super()._load_cmd_line()
        check_known_settings(settings, "the command line", SETTINGS_OWNERS)
        return settings

    def _convert_config_dict(self, config_dict):
        """Command-line and config_dict strings as literals: RecBole would ``eval`` them, and a
        checkpoint's saved settings pass through here when a run is reloaded or resumed."""
        for key, value in config_dict.items():
            if isinstance(value, str):
                config_dict[key] = literal_setting(value, name=key)
        return config_dict

    def _set_default_parameters(self):
        # Before RecBole's refusal of our sampled negatives for a sequential model, ours.
        check_model_fits_defaults(self.model_class, self.final_config_dict)
        # Types and ranges first: RecBole's own checks here, and its later uses, fail obscurely.
        check_run_settings(self.final_config_dict, self.internal_config_dict)
        check_eval_mode(self.model_class, self.final_config_dict)
        super()._set_default_parameters()

    def _init_device(self):
        settings = self.final_config_dict
        # Checked in the launching process too, before any worker starts.
        distributed = check_distributed_settings(settings)
        if distributed and "local_rank" in settings and not uses_gpus(settings):
            # RecBole's DDP joins with NCCL on CUDA only: set the device up as it does for one
            # process, then join the run's process group with gloo.
            local_rank = settings.pop("local_rank")
            super()._init_device()
            settings["local_rank"] = local_rank
            join_cpu_group(settings)
        else:
            super()._init_device()
        if self.final_config_dict["device"].type == "cpu":
            self.final_config_dict["use_gpu"] = False  # RecBole's default True, on any machine

    def _get_model_and_dataset(self, model, dataset):
        if model is None:
            model = self.external_config_dict.get("model")
        if model is None:
            raise KeyError(
                "model need to be specified in at least one of the these ways: "
                "[model variable, config file, config dict, command line]"
            )
        model_class = get_model(model) if isinstance(model, str) else model
        if dataset is None:
            # No dataset anywhere: the MovieLens-100K copy with false-positive flags.
            dataset = self.external_config_dict.get("dataset", EMBEDDED_DATASET)
        return model_class.__name__, model_class, dataset

    def _load_internal_config_dict(self, model, model_class, dataset):
        super()._load_internal_config_dict(model, model_class, dataset)
        for file in (
            os.path.join(PROPERTIES_DIR, "overall.yaml"),
            # A RecBole model's own defaults beat our global ones: NAIS's and RecVAE's `beta`
            # is not R-CE's, and a baseline keeps its authors' settings.
            os.path.join(RECBOLE_PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "model", f"{model}.yaml"),
            os.path.join(PROPERTIES_DIR, "dataset", f"{dataset}.yaml"),
        ):
            if os.path.isfile(file):
                self._update_internal_config_dict(file)

    def _check_adt_settings(self) -> None:
        """Raise ValueError on a bad ADT setting now, not after the data is loaded."""
        settings = self.final_config_dict
        settings["adt_loss"] = parsed(self, LossChoice).name  # TCE for t-ce, as models read it
        model_for_loss(self.model_class, settings["adt_loss"])  # the loss applies
        self._check_phases_and_colliding()
        self._load_extra_feedback_field()
        if (
            parsed(self, LossChoice).base == "nr"
            and parsed(self, NRWeights).dissatisfied_threshold is not None
            and parsed(self, ExtraFeedbackSettings).field is None
        ):
            raise ValueError(
                "nr_dissatisfied_threshold needs real extra feedback (extra_feedback_field, e.g. "
                "rating), but D* is simulated: leave it empty (~), and choose with "
                "nr_unlabelled_clicks what the clicks outside D* are."
            )
        if parsed(self, NoiseInjection).enabled and not settings["fp_field"]:
            raise ValueError(
                "noise_rate needs fp_field, the field that flags the injected false positives; "
                "set fp_field (e.g. false_positive: it is added if the data lacks it) or "
                "noise_rate: 0."
            )
        if settings["clean_test"] and not settings["fp_field"]:
            raise ValueError(
                "clean_test needs fp_field, the name of the false-positive flag field; "
                "set fp_field (e.g. false_positive) or clean_test: False."
            )

    def _check_phases_and_colliding(self) -> None:
        phases = parsed(self, PhaseSettings)
        if phases.on_extra_feedback and not trains_on_extra_feedback(self.model_class):
            able = [name for name, model in MODELS.items() if trains_on_extra_feedback(model)]
            raise ValueError(
                f"phases {list(phases.names)} train on extra feedback D*, which {self.model} "
                f"cannot: the warmup and finetune phases work with {', '.join(able)}. Use one "
                "of them, or phases: [adt]."
            )
        if parsed(self, CollidingSettings).enabled and "warmup" not in phases.names:
            raise ValueError(
                "colliding_inference needs E*, the user representations after a warmup phase: "
                "add warmup to phases (e.g. phases: [warmup, adt]) or set "
                "colliding_inference: False."
            )

    def _load_extra_feedback_field(self) -> None:
        """Load the real extra-feedback field with the interactions, unless load_col omits all."""
        field = parsed(self, ExtraFeedbackSettings).field
        load_col = self.final_config_dict.get("load_col")
        if not field or not isinstance(load_col, dict):
            return
        columns = load_col.get("inter")
        if isinstance(columns, list) and field not in columns:
            load_col["inter"] = [*columns, field]
