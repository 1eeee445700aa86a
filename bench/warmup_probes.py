r"""Warm-up probes: why CE after a long warm-up settles lower on sparse data (issue 14, item 4).

    python -m bench.warmup_probes --data_path DIR --dataset NAME --seed S --variant VARIANT \
        [--key=value ...]

Trains GMF (``--model=...`` for another model with ``user_embedding``, ``item_embedding`` and
``predict_layer``) with the given RecBole settings, one probe acting at the boundary between the
``warmup`` phase and the phase after it, and prints one JSON line: the seed, variant and
settings, the kept epoch, the best validation and the test result, and the embedding
measurements of :func:`measure`. The rows of ``docs/results/synthetic/warmup.json`` come from
this module (each row names its command). Its finding: the damage of the shipped warm-up (Eq. 7
trained to its own validation optimum) is the *scale* the user and :math:`D^*` item vectors reach,
not the phase boundary: ``shrink_all`` recovers the from-scratch score, while ``keep_adam``,
``reset_h``, ``rescale_h`` and ``reset_items`` leave it where it is.

Variants (every one but ``keep_adam`` and ``last_warmup`` acts right after the warm-up's
selected checkpoint is reloaded and the next phase's optimizer is built, before its first batch):

- ``base``: no change (the shipped behaviour; with ``--phases=[adt]`` CE from scratch);
- ``keep_adam``: the next phase keeps the warm-up's optimizer (Adam's moments) instead of a new one;
- ``reset_h``: the predict layer re-drawn as at initialisation (Kaiming-uniform ``h``, bias 0);
- ``rescale_h``: ``h`` scaled back to its initial norm, :math:`h \leftarrow h \,\|h_0\| / \|h\|`,
  bias 0;
- ``reset_items``: the vectors of every item outside :math:`D^*` (padding and untrained ones
  included) re-drawn from N(0, 0.01²);
- ``reset_dstar_items``: the vectors of the :math:`D^*` items re-drawn from N(0, 0.01²);
- ``reset_users``: every user vector re-drawn from N(0, 0.01²);
- ``reset_users_dstar_items``: both of the above;
- ``shrink_dstar_items``: each :math:`D^*` item vector scaled to the initial row norm,
  :math:`q_i \leftarrow 0.057\, q_i / \|q_i\|` (directions kept);
- ``shrink_all``: every item and user vector scaled so;
- ``last_warmup``: the warm-up's last epoch is kept instead of its selected checkpoint.

Defaults (each can be overridden with ``--key=value``, as for ``run_recbole_adt.py``): model GMF,
adt_loss CE, epochs 100, topk [20, 50], metrics [Recall, NDCG], valid_metric Recall@50. The run
writes its log and checkpoints to a temporary folder unless ``--output_dir=DIR`` is given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from unittest import mock

import torch

from recbole_adt import quick_start
from recbole_adt.data.extra_feedback import ExtraFeedbackSettings, select_extra_feedback
from recbole_adt.settings import parsed
from recbole_adt.trainer import PhasedTrainer

VARIANTS = (
    "base",
    "keep_adam",
    "reset_h",
    "rescale_h",
    "reset_items",
    "reset_dstar_items",
    "reset_users",
    "reset_users_dstar_items",
    "shrink_dstar_items",
    "shrink_all",
    "last_warmup",
)
# Mean row norm of GMF's initial factors, N(0, 0.01²) in 32 dimensions: 0.01 * sqrt(32), as
# measured (rounded); the recorded shrink_* rows use this value.
INITIAL_ROW_NORM = 0.057
INIT_STD = 0.01  # GMF's initial factor std (NCF's initialisation)
TOP_K = 50  # the top-k whose composition is measured
DEFAULTS = {
    "model": "GMF",
    "adt_loss": "CE",
    "epochs": 100,
    "topk": [20, 50],
    "metrics": ["Recall", "NDCG"],
    "valid_metric": "Recall@50",
    "show_progress": False,
}


@dataclass
class ProbeRecord:
    """The probe's variant and what it measured, keyed by moment (``after_warmup``, ...)."""

    variant: str
    measurements: dict[str, dict] = field(default_factory=dict)


def dstar_items(trainer: PhasedTrainer) -> torch.Tensor:
    """Bool per item id: the item has a :math:`D^*` interaction in the training split.

    Without a :math:`D^*` phase the dataset holds none; it is selected here as a run would.
    """
    dataset = trainer.phase_loaders["adt"]._dataset
    extra = dataset.extra_feedback
    if extra is None:
        settings = parsed(trainer.config, ExtraFeedbackSettings)
        extra = select_extra_feedback(settings, dataset, fp_field=trainer.config["fp_field"])
    items = torch.zeros(dataset.item_num, dtype=torch.bool)
    if extra is not None:
        items[dataset.inter_feat[dataset.iid_field][torch.as_tensor(extra.row_mask)]] = True
    return items


def measure(trainer: PhasedTrainer) -> dict:
    r"""Norms of the model's parts and the composition of every user's top 50.

    Mean row norms of the :math:`D^*` items, of the training items never in :math:`D^*`, and of
    the users (padding row left out); :math:`\|h\|` and the bias; the share of all users' top-50
    slots held by :math:`D^*` items and the distinct items there, scoring every item with
    :math:`h^\top (p_u \odot q_i) + b` (training history not masked).
    """
    model = trainer.model
    items = model.item_embedding.weight.detach()
    users = model.user_embedding.weight.detach()[1:]
    h = model.predict_layer.weight.detach().view(-1)
    bias = model.predict_layer.bias.detach()
    dataset = trainer.phase_loaders["adt"]._dataset
    in_training = torch.zeros(items.shape[0], dtype=torch.bool)
    in_training[dataset.inter_feat[dataset.iid_field]] = True
    dstar = dstar_items(trainer)
    never = in_training & ~dstar
    with torch.no_grad():
        scores = (users * h) @ items.T + bias
        scores[:, 0] = -float("inf")  # the padding item
        top = scores.topk(TOP_K, dim=1).indices
    return {
        "h_norm": round(h.norm().item(), 4),
        "bias": round(bias.item(), 4),
        "q_norm_dstar": round(items[dstar].norm(dim=1).mean().item(), 4),
        "q_norm_never": round(items[never].norm(dim=1).mean().item(), 4),
        "p_norm": round(users.norm(dim=1).mean().item(), 4),
        "n_dstar_items": int(dstar.sum()),
        "n_never_items": int(never.sum()),
        f"top{TOP_K}_share_dstar_items": round(dstar[top].float().mean().item(), 4),
        f"top{TOP_K}_distinct_items": int(torch.unique(top).numel()),
    }


@torch.no_grad()
def apply_variant(variant: str, trainer: PhasedTrainer, initial_h_norm: float) -> None:
    """Change the warm-up's selected weights as ``variant`` says (module docstring)."""
    model = trainer.model
    layer = model.predict_layer
    users = model.user_embedding.weight
    items = model.item_embedding.weight
    if variant == "reset_h":
        torch.nn.init.kaiming_uniform_(layer.weight, a=1, nonlinearity="sigmoid")
        torch.nn.init.zeros_(layer.bias)
    elif variant == "rescale_h":
        layer.weight.mul_(initial_h_norm / layer.weight.norm())
        layer.bias.zero_()
    elif variant in ("reset_users", "reset_dstar_items", "reset_users_dstar_items"):
        dstar = dstar_items(trainer)
        if "users" in variant:
            users.copy_(torch.randn_like(users) * INIT_STD)
        if "dstar" in variant:
            items[dstar] = torch.randn_like(items[dstar]) * INIT_STD
    elif variant in ("shrink_dstar_items", "shrink_all"):
        dstar = dstar_items(trainer)
        rows = dstar if variant == "shrink_dstar_items" else torch.ones_like(dstar)
        items[rows] = items[rows] / items[rows].norm(dim=1, keepdim=True) * INITIAL_ROW_NORM
        if variant == "shrink_all":
            users.copy_(users / users.norm(dim=1, keepdim=True).clamp_min(1e-12) * INITIAL_ROW_NORM)
    elif variant == "reset_items":
        never = ~dstar_items(trainer)  # every item outside D*: back to the initial scale
        items[never] = torch.randn_like(items[never]) * INIT_STD


class WarmupProbeMixin:
    """Acts at the phase boundary after ``warmup`` as :attr:`probe` says, and measures.

    Mixed in before a :class:`PhasedTrainer` class by :func:`probe_trainer_class`.
    """

    probe: ProbeRecord
    _initial_h_norm: float

    def _after_warmup(self) -> bool:
        return self.phase_index > 0 and self.phases[self.phase_index - 1].name == "warmup"

    def _reset_for_phase(self) -> None:
        if self.probe.variant == "keep_adam" and self._after_warmup():
            optimizer = self.optimizer
            super()._reset_for_phase()
            self.optimizer = optimizer
            self.probe.measurements["after_warmup"] = measure(self)
            return
        super()._reset_for_phase()
        if self._after_warmup():
            self.probe.measurements["after_warmup"] = measure(self)  # before the change
            apply_variant(self.probe.variant, self, self._initial_h_norm)

    def _load_best(self) -> None:
        if self.probe.variant == "last_warmup" and self.phase.name == "warmup":
            return  # the next phase starts from the warm-up's last epoch
        super()._load_best()

    def _fit_phases(self, *args, **kwargs):
        self._initial_h_norm = self.model.predict_layer.weight.norm().item()
        return super()._fit_phases(*args, **kwargs)

    def fit(self, *args, **kwargs):
        result = super().fit(*args, **kwargs)
        self.probe.measurements["final_last_epoch"] = measure(self)
        return result


def probe_trainer_class(base: type, probe: ProbeRecord) -> type:
    """``base`` (a PhasedTrainer class) with :class:`WarmupProbeMixin` acting for ``probe``."""
    if not issubclass(base, PhasedTrainer):
        raise ValueError(
            f"The warm-up probes need a phased trainer, but the run's trainer is "
            f"{base.__name__}: use a model trained with ADT (e.g. --model=GMF)."
        )
    return type(f"Probe{base.__name__}", (WarmupProbeMixin, base), {"probe": probe})


@contextlib.contextmanager
def probing(probe: ProbeRecord) -> Iterator[None]:
    """Within the block, run_recbole_adt trains with the probing subclass of its trainer.

    run_recbole_adt takes no trainer class, so its ``get_trainer`` is replaced for the block
    (and restored after it). RecBole's Config also reads ``sys.argv``: the block hides this
    module's own arguments from it, so the settings come from ``config_dict`` only.
    """
    original = quick_start.get_trainer

    def get_trainer(*args, **kwargs) -> type:
        return probe_trainer_class(original(*args, **kwargs), probe)

    with (
        mock.patch.object(quick_start, "get_trainer", get_trainer),
        mock.patch.object(sys, "argv", sys.argv[:1]),
    ):
        yield


def run_probe(
    data_path: str, dataset: str, seed: int, variant: str, settings: dict[str, str]
) -> dict:
    """Train once with ``variant``'s probe; the outcome as :func:`main` prints it."""
    if variant not in VARIANTS:
        raise ValueError(f"Unknown variant {variant!r}: choose one of {', '.join(VARIANTS)}.")
    probe = ProbeRecord(variant)
    with contextlib.ExitStack() as stack:
        config = {**DEFAULTS, "seed": seed, "data_path": data_path, **settings}
        if "output_dir" not in settings:
            config["output_dir"] = stack.enter_context(tempfile.TemporaryDirectory())
        model = config.pop("model")
        stack.enter_context(probing(probe))
        result = quick_start.run_recbole_adt(model, dataset, config_dict=config)
    return {
        "seed": seed,
        "variant": variant,
        "settings": settings,
        "best_epoch": result["best_epoch"],
        "valid_metric": result["valid_metric"],
        "best_valid_result": {k: float(v) for k, v in result["best_valid_result"].items()},
        "test_result": {k: float(v) for k, v in result["test_result"].items()},
        "measurements": probe.measurements,
    }


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, dict[str, str]]:
    """This module's arguments, and the RecBole settings given as ``--key=value``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.warmup_probes",
        description="Train once with a warm-up probe; print one JSON line.",
        epilog="Other settings as --key=value (RecBole's, as for run_recbole_adt.py).",
    )
    parser.add_argument("--data_path", required=True, help="RecBole data_path")
    parser.add_argument("--dataset", required=True, help="dataset name under data_path")
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--variant", choices=VARIANTS, required=True)
    args, rest = parser.parse_known_args(argv)
    settings = {}
    for arg in rest:
        name, equals, value = arg[2:].partition("=")
        if not arg.startswith("--") or not name or not equals:
            parser.error(f"unrecognized argument {arg!r}: settings are given as --name=value")
        settings[name] = value  # RecBole's Config converts the text, as on its command line
    return args, settings


def main(argv: list[str] | None = None) -> None:
    torch.set_num_threads(1)
    args, settings = parse_args(argv)
    try:
        outcome = run_probe(args.data_path, args.dataset, args.seed, args.variant, settings)
    except ValueError as err:
        print(f"python -m bench.warmup_probes: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(json.dumps(outcome))


if __name__ == "__main__":
    main()
