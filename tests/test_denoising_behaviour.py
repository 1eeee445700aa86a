"""On seeded data with planted false positives, ADT singles them out (paper Fig. 9 in small)."""

import pytest

from tests.pipeline import prepare


@pytest.fixture
def trained(base_config):
    def train(model_name, loss, **settings):
        config = {
            **base_config,
            "adt_loss": loss,
            "drop_rate": 0.2,
            "num_gradual": 10,
            "learning_rate": 0.01,
            "epochs": 6,
            **settings,
        }
        _, _, (train_data, valid_data, _), model, trainer = prepare(model_name, config)
        trainer.fit(train_data, valid_data, saved=False)
        return model.denoising_summary()

    return train


@pytest.mark.parametrize("model_name", ["GMF", "NeuMF"])
def test_truncation_drops_mostly_false_positives(trained, model_name):
    stats = trained(model_name, "TCE")
    base_rate = stats["false_positives"] / stats["positives"]
    precision = stats["dropped_false_positives"] / stats["dropped"]
    assert 0.15 < base_rate < 0.25
    # random dropping would have precision base_rate (paper section 5.2, Fig. 9)
    assert precision > 2 * base_rate, (precision, base_rate)


def test_reweighting_gives_false_positives_smaller_weights(trained):
    stats = trained("GMF", "RCE", beta=1.0)
    clean = stats["weight_clean"] / (stats["positives"] - stats["false_positives"])
    noisy = stats["weight_false_positive"] / stats["false_positives"]
    assert noisy < 0.8 * clean, (noisy, clean)
