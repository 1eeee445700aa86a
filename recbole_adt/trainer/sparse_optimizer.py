"""Sparse embedding updates (``sparse_embeddings: True``): SparseAdam on the embedding tables.

RecBole's ``Trainer._build_optimizer`` builds one dense ``Adam``, which reads and writes every row
of every embedding table at every step: at the size of a Yelp slice (45k users, 50k items) that is
about 70% of a GMF epoch (``python -m bench.bench_training --breakdown``). With
``sparse_embeddings`` the models' embeddings produce sparse gradients
(``nn.Embedding(sparse=True)``) and the tables get ``torch.optim.SparseAdam``, which updates only
the rows in the batch; the other parameters keep a dense Adam. SparseAdam is "lazy" Adam: a row's
moments decay only on the steps that use it, so results differ from dense Adam, and the option is
off by default. Its cost per step does not grow with the tables, but on small ones (ml-100k) it
is slower than dense Adam.
"""

from __future__ import annotations

import torch


class CombinedOptimizer:
    """Two optimizers stepped together; what a RecBole ``Trainer`` needs of ``self.optimizer``."""

    def __init__(self, sparse: torch.optim.Optimizer, dense: torch.optim.Optimizer | None):
        self.optimizers = {"sparse": sparse}
        if dense is not None:
            self.optimizers["dense"] = dense

    @property
    def param_groups(self) -> list[dict]:
        return [group for opt in self.optimizers.values() for group in opt.param_groups]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for opt in self.optimizers.values():
            opt.step()
        return loss

    def state_dict(self) -> dict:
        return {name: opt.state_dict() for name, opt in self.optimizers.items()}

    def load_state_dict(self, state_dict: dict) -> None:
        if set(state_dict) != set(self.optimizers):
            raise ValueError(
                f"The checkpoint's optimizer state has parts {sorted(state_dict)}, but this run "
                f"optimizes {sorted(self.optimizers)}: resume with the sparse_embeddings setting "
                "the checkpoint was trained with."
            )
        for name, opt in self.optimizers.items():
            opt.load_state_dict(state_dict[name])


def sparse_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The weights of the model's embeddings that produce sparse gradients."""
    return [
        module.weight
        for module in model.modules()
        if isinstance(module, torch.nn.Embedding) and module.sparse
    ]


class SparseOptimizerMixin:
    """Mix into a RecBole ``Trainer`` subclass, before it: ``sparse_embeddings`` gets SparseAdam."""

    def _build_optimizer(self, **kwargs):
        if not self.config["sparse_embeddings"] or "params" in kwargs:
            return super()._build_optimizer(**kwargs)
        sparse = sparse_parameters(self.model)
        learner = kwargs.get("learner", self.learner)
        weight_decay = kwargs.get("weight_decay", self.weight_decay)
        if not sparse:
            raise ValueError(
                f"sparse_embeddings is set, but {type(self.model).__name__} has no sparse "
                "embeddings: it works with GMF and NeuMF. Set sparse_embeddings: False."
            )
        if learner.lower() not in ("adam", "sparse_adam") or weight_decay:
            raise ValueError(
                f"sparse_embeddings trains the embeddings with SparseAdam, which matches learner "
                f"adam without weight_decay, but learner is {learner!r} and weight_decay "
                f"{weight_decay}. Set learner: adam and weight_decay: 0, or sparse_embeddings: "
                "False."
            )
        ids = {id(p) for p in sparse}
        dense = [p for p in self.model.parameters() if p.requires_grad and id(p) not in ids]
        learning_rate = kwargs.get("learning_rate", self.learning_rate)
        rest = {key: value for key, value in kwargs.items() if key != "learner"}
        return CombinedOptimizer(
            torch.optim.SparseAdam(sparse, lr=learning_rate),
            super()._build_optimizer(params=dense, learner="adam", **rest) if dense else None,
        )
