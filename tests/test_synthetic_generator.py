"""bench.synthetic: seeded Amazon-book-like data with planted false positives."""

import numpy as np
import pandas as pd
import pytest
import torch
from recbole.data import data_preparation
from recbole.utils import init_seed

from bench.synthetic import SyntheticSpec, generate, generate_dataset, main
from recbole_adt.config import Config
from recbole_adt.quick_start import build_dataset
from tests.pipeline import prepare

SMALL = SyntheticSpec(users=400, items=600, interactions=8_000, fp_rate=0.15, clusters=6, seed=3)


def read(path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t")


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    first = generate_dataset(tmp_path / "a", "syn", SMALL)
    second = generate_dataset(tmp_path / "b", "syn", SMALL)
    other = generate_dataset(tmp_path / "c", "syn", SyntheticSpec(**{**vars(SMALL), "seed": 4}))
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    assert sorted(p.name for p in first.parent.iterdir()) == ["syn.inter"]  # no temporary left


def test_counts_rate_and_no_duplicate_pairs(tmp_path):
    frame = read(generate_dataset(tmp_path, "syn", SMALL))
    assert list(frame.columns) == [
        "user_id:token",
        "item_id:token",
        "timestamp:float",
        "false_positive:float",
    ]
    assert len(frame) == SMALL.interactions
    assert frame["false_positive:float"].sum() == round(SMALL.fp_rate * SMALL.interactions)
    assert set(frame["false_positive:float"]) == {0, 1}
    assert frame["user_id:token"].nunique() == SMALL.users
    assert frame["item_id:token"].nunique() == SMALL.items
    assert not frame.duplicated(["user_id:token", "item_id:token"]).any()
    per_user = frame["user_id:token"].value_counts()
    assert per_user.min() >= SMALL.min_user_interactions
    assert per_user.max() <= SMALL.user_cap()
    # Power-law popularity: the busiest item is far above the typical one.
    per_item = frame["item_id:token"].value_counts()
    assert per_item.max() > 5 * per_item.median()


def test_false_positives_leave_the_users_taste():
    frame = generate(SMALL)
    users, items = frame["user_id:token"].to_numpy(), frame["item_id:token"].to_numpy()
    fp = frame["false_positive:float"].to_numpy() == 1
    liked = np.zeros((SMALL.users, SMALL.items))
    liked[users[~fp], items[~fp]] = 1
    # How often other users' true positives pair the item with the user's true positives.
    together = liked.T @ liked
    support = (liked @ together)[users, items]
    own = liked[users, items]  # the user's own pairs, taken out below
    support -= own * (np.diag(together)[items] + liked.sum(1)[users] - 1)
    support /= liked.sum(1)[users]
    assert support[fp].mean() < 0.1 * support[~fp].mean()


def test_bad_sizes_raise_value_error_and_write_nothing(tmp_path):
    with pytest.raises(ValueError, match="interactions"):
        generate_dataset(tmp_path, "syn", SyntheticSpec(users=100, items=50, interactions=200))
    with pytest.raises(ValueError, match="fp_rate"):
        generate(SyntheticSpec(users=10, items=100, interactions=100, fp_rate=1.5, clusters=2))
    assert not (tmp_path / "syn" / "syn.inter").exists()


def test_command_line_writes_the_file_and_rejects_bad_sizes(tmp_path, capsys):
    main(["--output", str(tmp_path), "--name", "cli", "--users", "50", "--items", "400",
          "--interactions", "600", "--clusters", "4", "--rating"])  # fmt: skip
    frame = read(tmp_path / "cli" / "cli.inter")
    assert len(frame) == 600 and "rating:float" in frame
    # Ratings follow the paper's rule: a false positive is rated below 3.
    assert ((frame["rating:float"] < 3) == (frame["false_positive:float"] == 1)).all()
    with pytest.raises(SystemExit) as exit_info:
        main(["--output", str(tmp_path), "--name", "bad", "--interactions", "10"])
    assert exit_info.value.code == 2
    assert "interactions" in capsys.readouterr().err


def test_loads_into_adt_dataset_with_a_clean_test(tmp_path):
    generate_dataset(tmp_path, "syn", SMALL)
    settings = {"dataset": "syn", "data_path": str(tmp_path), "state": "ERROR"}
    config = Config("GMF", config_dict={**settings, "checkpoint_dir": str(tmp_path / "saved")})
    init_seed(config["seed"], config["reproducibility"])
    dataset = build_dataset(config)
    assert (dataset.user_num, dataset.item_num) == (SMALL.users + 1, SMALL.items + 1)  # + [PAD]
    train, _valid, test = data_preparation(config, dataset)
    assert (test._dataset.inter_feat["false_positive"] == 0).all()
    assert train._dataset.inter_feat["false_positive"].sum() > 0


@pytest.mark.slow
def test_gmf_finds_planted_false_positives_harder(tmp_path):
    generate_dataset(tmp_path, "syn", SMALL)
    settings = {
        "dataset": "syn",
        "data_path": str(tmp_path),
        "checkpoint_dir": str(tmp_path / "saved"),
        "state": "ERROR",
        "show_progress": False,
        "learning_rate": 0.01,
        "seed": 5,
    }
    _config, _dataset, (train, _, _), model, trainer = prepare("GMF", settings)
    for epoch in range(4):
        trainer._train_epoch(train, epoch)
    data = train._dataset.inter_feat
    model.eval()
    with torch.no_grad():
        logits = model.forward(data["user_id"], data["item_id"])
    loss = torch.nn.functional.softplus(-logits)  # BCE of a positive
    fp = data["false_positive"] > 0.5
    assert loss[fp].mean() > 1.2 * loss[~fp].mean()
