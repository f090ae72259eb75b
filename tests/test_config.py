"""The configuration: defaults from physics.md, TOML, overrides, errors that name the key."""

from __future__ import annotations

import pydantic
import pytest

from ptychopinn_core.config import Config, ConfigError, parse_assignments, to_toml


def test_defaults_are_those_of_the_physics_definition():
    config = Config()
    assert config.model.pattern_size == 64
    assert config.model.n_filters_scale == 1  # not 2: docs/benchmarks.md, time to quality
    assert config.model.amp_activation == "sigmoid"
    assert config.data.nphotons == 1e9
    assert config.data.n_neighbors == 4
    training = config.training
    assert (training.learning_rate, training.adam_beta1, training.adam_beta2) == (1e-3, 0.9, 0.999)
    assert (training.batch_size, training.epochs) == (8, 50)  # not 16: same evidence
    assert (training.lr_plateau_factor, training.lr_plateau_patience) == (0.5, 2)
    assert training.min_learning_rate == 1e-4
    assert training.validation_fraction == 0.05
    assert (training.nll_weight, training.mae_weight) == (1.0, 0.0)


def test_a_config_without_architecture_loads_as_the_encoder_decoder():
    """Bundles written before model.architecture existed store no such key: they hold an
    encoder_decoder network and must load as one."""
    stored = Config().to_dict()
    del stored["model"]["architecture"]
    assert Config.from_dict(stored).model.architecture == "encoder_decoder"
    assert Config.from_dict({"model": {"pattern_size": 32}}).model.architecture == "encoder_decoder"
    assert Config().with_overrides({"model.architecture": "unet"}).model.architecture == "unet"


def test_config_is_immutable():
    config = Config()
    with pytest.raises(pydantic.ValidationError):
        config.training.epochs = 3  # type: ignore[misc]


def test_overrides_parse_command_line_text_and_revalidate():
    config = Config().with_overrides(
        {
            "training.epochs": "5",
            "training.learning_rate": "3e-4",
            "model.probe_trainable": "true",
            "model.gridsize": 2,
            "data.n_groups": "none",
            "execution.precision": "bf16-mixed",
        }
    )
    assert config.training.epochs == 5
    assert config.training.learning_rate == pytest.approx(3e-4)
    assert config.model.probe_trainable is True
    assert config.model.group_size == 4
    assert config.data.n_groups is None
    assert config.execution.precision == "bf16-mixed"
    assert Config().training.epochs == 50, "the original must be unchanged"


@pytest.mark.parametrize(
    ("overrides", "fragments"),
    [
        ({"training.epoch": "5"}, ["training.epoch", "allowed keys in [training]", "epochs"]),
        ({"modle.gridsize": "2"}, ["modle.gridsize", "model, data, training"]),
        ({"gridsize": "2"}, ["'gridsize'", "section.key"]),
        ({"model.amp_activation": "tanh"}, ["model.amp_activation", "'sigmoid'", "'swish'"]),
        ({"training.epochs": "many"}, ["training.epochs", "'many'", "integer"]),
        ({"training.epochs": "0"}, ["training.epochs", "greater than or equal to 1"]),
        ({"model.pattern_size": "48"}, ["model.pattern_size", "power of two"]),
        ({"training.min_learning_rate": "1"}, ["min_learning_rate", "exceeds learning_rate"]),
    ],
)
def test_bad_keys_and_values_are_errors_naming_them(overrides, fragments):
    with pytest.raises(ConfigError) as error:
        Config().with_overrides(overrides)
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_toml_round_trip(tmp_path):
    config = Config().with_overrides({"training.epochs": "7", "model.gridsize": "2"})
    path = tmp_path / "run.toml"
    path.write_text(to_toml(config))
    assert Config.from_toml(path) == config


def test_toml_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[training]\nepochs = 3\nbatchsize = 8\n")
    with pytest.raises(ConfigError, match=r"bad\.toml.*training\.batchsize.*batch_size"):
        Config.from_toml(path)


def test_toml_syntax_error_and_missing_file_name_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[training\n")
    with pytest.raises(ConfigError, match="broken.toml: invalid TOML"):
        Config.from_toml(path)
    with pytest.raises(ConfigError, match="missing.toml: config file not found"):
        Config.from_toml(tmp_path / "missing.toml")


def test_dict_round_trip_is_what_bundles_store():
    config = Config().with_overrides({"execution.devices": "2", "training.mode": "supervised"})
    assert Config.from_dict(config.to_dict()) == config
    assert config.execution.devices == 2


def test_set_assignments_are_parsed_strictly():
    assert parse_assignments(["training.epochs=5", " model.gridsize = 2 "]) == {
        "training.epochs": "5",
        "model.gridsize": "2",
    }
    with pytest.raises(ConfigError, match="expected section.key=value"):
        parse_assignments(["training.epochs"])


def test_none_clears_optionals_but_stays_a_word_where_it_is_a_choice():
    config = Config().with_overrides({"execution.logger": "none", "data.n_groups": "none"})
    assert config.execution.logger == "none"
    assert config.data.n_groups is None
