"""Named recipes resolve to the configurations docs/performance.md documents, under the file and the flags."""

from pathlib import Path

import pytest
import yaml

from convlab.cli import main as cli_main
from convlab.errors import ConvlabError
from convlab.models import create_model
from convlab.training.config import recipe_markdown, resolve_config
from convlab.training.recipes import RECIPES, recipe_settings
from tests.helpers import count_parameters

DOC = Path(__file__).resolve().parents[2] / "docs" / "performance.md"


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_recipe_resolves_to_exactly_its_settings(name):
    config = resolve_config(recipe=name)
    assert config.recipe == name
    for field, value in RECIPES[name].settings.items():
        assert getattr(config, field) == value, field


def test_the_documented_recipe_table_is_the_recipes_data():
    # docs/performance.md holds recipe_markdown()'s output verbatim: the doc cannot drift from the code.
    assert recipe_markdown() in DOC.read_text()


def test_the_fast_recipe_is_the_documented_fashion_mnist_configuration():
    assert recipe_settings("fast") == {
        "model": "vgg_mini",
        "data": "fashion-mnist",
        "epochs": 10,
        "batch_size": 256,
        "optimizer": "nesterov",
        "lr": 0.2,
        "weight_decay": 0.0005,
        "schedule": "onecycle",
        "label_smoothing": 0.1,
        "augment": ["flip"],
        "amp": "bf16",
        "channels_last": True,
        "test_tta": "flip",
    }


def test_the_best_recipe_is_the_documented_half_hour_configuration():
    # docs/performance.md: what these exact settings measured end to end (test top-1 through shift TTA)
    assert recipe_settings("best") == {
        "model": "vgg_mini",
        "options": {"width": 3, "dropout": 0.3},
        "data": "fashion-mnist",
        "val_split": 0,
        "epochs": 47,
        "batch_size": 256,
        "optimizer": "nesterov",
        "lr": 0.2,
        "weight_decay": 0.0005,
        "schedule": "onecycle",
        "label_smoothing": 0.1,
        "augment": ["crop", "flip"],
        "crop_padding": 2,
        "amp": "bf16",
        "channels_last": True,
        "test_tta": "shift",
    }
    config = resolve_config(recipe="best")
    model = create_model(config.model, num_classes=10, in_chans=1, **config.options)
    assert count_parameters(model) == 1_292_938  # vgg_mini's 145,290 at three times the width


def test_file_and_flags_override_a_recipe_and_options_merge(tmp_path):
    settings = tmp_path / "run.yaml"
    settings.write_text("epochs: 2\nbatch_size: 64\n")
    config = resolve_config(settings, recipe="lenet5-fast", batch_size=32, options={"pool": "avg"})
    assert (config.epochs, config.batch_size) == (2, 32)  # the file beats the recipe, the flag beats the file
    assert (
        config.options == {"pool": "avg"} and config.optimizer == RECIPES["lenet5-fast"].settings["optimizer"]
    )
    # A recipe named in the file applies too, under that file's own values.
    settings.write_text("recipe: lenet5-fast\nepochs: 3\n")
    config = resolve_config(settings)
    assert config.epochs == 3 and config.batch_size == RECIPES["lenet5-fast"].settings["batch_size"]


def test_an_unknown_recipe_is_one_clear_error():
    with pytest.raises(ConvlabError, match=r"Unknown recipe 'fsat'.*fast"):
        resolve_config(recipe="fsat")


def test_train_command_applies_the_recipe_and_saves_it(tmp_path):
    # One short epoch on 500 images: the saved configuration is the recipe's, with the flags on top.
    out = tmp_path / "run"
    code = cli_main(
        [
            "train",
            "--recipe",
            "lenet5-fast",
            "--epochs",
            "1",
            "--limit",
            "500",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    expected = {
        **recipe_settings("lenet5-fast"),
        "recipe": "lenet5-fast",
        "epochs": 1,
        "limit": 500,
        "threads": 1,
    }
    assert {key: saved[key] for key in expected} == expected
    assert "(1 thread)" in (out / "train.log").read_text()
