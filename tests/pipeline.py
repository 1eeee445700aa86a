"""Build the objects run_recbole_adt builds, so tests can look inside each step."""

from recbole.data import data_preparation
from recbole.utils import init_seed

from recbole_adt.config import Config
from recbole_adt.data.nr_batches import nr_train_data
from recbole_adt.quick_start import build_dataset
from recbole_adt.utils import get_model, get_trainer


def prepare(model_name, config_dict):
    config = Config(model_name, config_dict=config_dict)
    init_seed(config["seed"], config["reproducibility"])
    dataset = build_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    train_data = nr_train_data(config, train_data)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(model_name)(config, train_data._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], model_name)(config, model)
    return config, dataset, (train_data, valid_data, test_data), model, trainer
