"""sparse_embeddings: sparse embedding gradients for GMF and NeuMF, stepped by SparseAdam."""

import pytest
import torch

from recbole_adt.trainer.sparse_optimizer import CombinedOptimizer
from tests.pipeline import prepare


def test_off_by_default_dense_adam(base_config):
    *_, model, trainer = prepare("GMF", base_config)
    assert not model.user_embedding.sparse and not model.item_embedding.sparse
    assert isinstance(trainer.optimizer, torch.optim.Adam)


@pytest.mark.parametrize("model_name", ["GMF", "NeuMF"])
def test_sparse_gradients_and_two_optimizers(base_config, model_name):
    config = {**base_config, "sparse_embeddings": True, "adt_loss": "TCE"}
    _config, _dataset, (train, _, _), model, trainer = prepare(model_name, config)
    assert isinstance(trainer.optimizer, CombinedOptimizer)
    sparse = trainer.optimizer.optimizers["sparse"]
    assert isinstance(sparse, torch.optim.SparseAdam)
    tables = [p for group in sparse.param_groups for p in group["params"]]
    assert len(tables) == (2 if model_name == "GMF" else 4)
    dense = [p for group in trainer.optimizer.param_groups for p in group["params"]][len(tables) :]
    assert {id(p) for p in tables} | {id(p) for p in dense} == {id(p) for p in model.parameters()}
    loss = trainer._train_epoch(train, 0)
    assert torch.isfinite(torch.tensor(loss))
    assert all(table.grad is None or table.grad.is_sparse for table in tables)


def rows_moved(config) -> bool:
    """Whether user rows of the first batch move on a second step that does not use them."""
    _config, _dataset, (train, _, _), model, trainer = prepare("GMF", config)
    batches = iter(train)
    first, second = next(batches), next(batches)
    users = set(first["user_id"].tolist()) - set(second["user_id"].tolist())
    users = torch.tensor(sorted(users))
    trainer._train_epoch([first], 0)
    before = model.user_embedding.weight.detach()[users].clone()
    trainer._train_epoch([second], 0)
    return not torch.equal(before, model.user_embedding.weight.detach()[users])


def test_sparse_adam_is_lazy_dense_adam_is_not(base_config):
    # Dense Adam's momentum moves rows the batch does not use; SparseAdam leaves them alone.
    assert rows_moved(base_config)
    assert not rows_moved({**base_config, "sparse_embeddings": True})


def test_checkpoint_round_trip(base_config):
    config = {**base_config, "sparse_embeddings": True, "epochs": 1}
    _config, _dataset, (train, valid, _), _model, trainer = prepare("GMF", config)
    trainer.fit(train, valid, saved=True, show_progress=False)
    *_, resumed = prepare("GMF", config)
    resumed.resume_checkpoint(trainer.saved_model_file)
    saved_state = trainer.optimizer.state_dict()["sparse"]["state"]
    loaded_state = resumed.optimizer.state_dict()["sparse"]["state"]
    assert torch.equal(saved_state[0]["exp_avg"], loaded_state[0]["exp_avg"])
    *_, dense = prepare("GMF", {**config, "sparse_embeddings": False})
    with pytest.raises((ValueError, KeyError)):
        dense.resume_checkpoint(trainer.saved_model_file)


@pytest.mark.parametrize(
    "model_name, extra, message",
    [
        ("CDAE", {}, "no sparse embeddings"),
        ("GMF", {"learner": "sgd"}, "learner"),
        ("GMF", {"weight_decay": 0.01}, "weight_decay"),
    ],
)
def test_unsupported_settings_raise_value_error(base_config, model_name, extra, message):
    with pytest.raises(ValueError, match=message):
        prepare(model_name, {**base_config, "sparse_embeddings": True, **extra})
