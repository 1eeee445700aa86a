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
from recbole_adt.data.extra_feedback import check_extra_feedback_settings
from recbole_adt.denoisers.dcf import check_dcf_settings
from recbole_adt.denoisers.truncate import check_drop_base, check_drop_count
from recbole_adt.diagnostics import check_diagnostics_settings
from recbole_adt.distributed import check_distributed_settings, join_cpu_group, uses_gpus
from recbole_adt.evaluation import colliding_grid
from recbole_adt.losses import check_beta, check_drop_rate, check_loss_name, check_nr_weights
from recbole_adt.model.extra_feedback import ExtraFeedbackMixin
from recbole_adt.model.nmtr import check_nmtr_loss_weights
from recbole_adt.phases import parse_phases
from recbole_adt.schedule import check_gradual_unit, check_num_gradual
from recbole_adt.settings import check_run_settings, literal_setting, read_config_file
from recbole_adt.trainer.full_sort import check_eval_memory_budget
from recbole_adt.trainer.selection import check_selection_settings
from recbole_adt.utils import get_model, model_for_loss

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")
RECBOLE_PROPERTIES_DIR = os.path.join(
    os.path.dirname(os.path.abspath(recbole.__file__)), "properties"
)


# The settings owners (settings.SettingsOwner), parsed once, in this order, by every Config.
# Add an owner here; everything else reads its parsed object with settings.parsed(config, Owner).
SETTINGS_OWNERS: tuple[type, ...] = ()


class Config(RecBoleConfig):
    parsed_settings: dict[type, object]  # owner class -> its parsed, frozen settings

    def __init__(self, model=None, dataset=None, config_file_list=None, config_dict=None):
        self.parsed_settings = {}
        super().__init__(model, dataset, config_file_list, config_dict)
        self._parse_owned_settings()
        self._check_adt_settings()

    def _parse_owned_settings(self) -> None:
        """Each owner parses and validates its keys once; a bad value is a ValueError."""
        for owner in SETTINGS_OWNERS:
            self.parsed_settings[owner] = owner.from_config(self)

    def _load_config_files(self, file_list):
        """RecBole's, but a missing, malformed or non-mapping file is a ValueError naming it."""
        settings = {}
        for file in file_list or []:
            settings.update(read_config_file(file, self.yaml_loader))
        return settings

    def _convert_config_dict(self, config_dict):
        """Command-line and config_dict strings as literals: RecBole would ``eval`` them, and a
        checkpoint's saved settings pass through here when a run is reloaded or resumed."""
        for key, value in config_dict.items():
            if isinstance(value, str):
                config_dict[key] = literal_setting(value)
        return config_dict

    def _set_default_parameters(self):
        # Types and ranges first: RecBole's own checks here, and its later uses, fail obscurely.
        check_run_settings(self.final_config_dict, self.internal_config_dict)
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
        settings["adt_loss"] = check_loss_name(settings["adt_loss"])
        model_for_loss(self.model_class, settings["adt_loss"])  # the loss applies
        check_selection_settings(settings)
        check_diagnostics_settings(settings)
        check_eval_memory_budget(settings["eval_memory_budget_mb"])
        check_drop_rate(settings["drop_rate"])
        unit = check_gradual_unit(settings["num_gradual_unit"])
        check_num_gradual(settings["num_gradual"], unit=unit)
        check_drop_base(settings["drop_base"])
        check_drop_count(settings["drop_count"])
        check_beta(settings["beta"])
        check_dcf_settings(settings)
        check_nr_weights(settings["nr_click_weight"], settings["nr_negative_weight"])
        if settings.get("nmtr_loss_weights") is not None:
            check_nmtr_loss_weights(settings["nmtr_loss_weights"])
        check_extra_feedback_settings(settings)
        self._check_phases_and_colliding()
        self._load_extra_feedback_field()
        if settings["clean_test"] and not settings["fp_field"]:
            raise ValueError(
                "clean_test needs fp_field, the name of the false-positive flag field; "
                "set fp_field (e.g. false_positive) or clean_test: False."
            )

    def _check_phases_and_colliding(self) -> None:
        settings = self.final_config_dict
        phases = [phase.name for phase in parse_phases(settings["phases"], settings["epochs"])]
        colliding_grid(settings)
        if phases != ["adt"] and not issubclass(self.model_class, ExtraFeedbackMixin):
            raise ValueError(
                f"phases {phases} need a model that can train on extra feedback; "
                f"{self.model} cannot. Use GMF, NeuMF, CDAE or NMTR, or phases: [adt]."
            )
        if settings["colliding_inference"] and "warmup" not in phases:
            raise ValueError(
                "colliding_inference needs E*, the user representations after a warmup phase: "
                "add warmup to phases (e.g. phases: [warmup, adt]) or set "
                "colliding_inference: False."
            )

    def _load_extra_feedback_field(self) -> None:
        """Load the real extra-feedback field with the interactions, unless load_col omits all."""
        field = self.final_config_dict["extra_feedback_field"]
        load_col = self.final_config_dict.get("load_col")
        if not field or not isinstance(load_col, dict):
            return
        columns = load_col.get("inter")
        if isinstance(columns, list) and field not in columns:
            load_col["inter"] = [*columns, field]
