"""The training configuration: YAML file under flags, checked values, and `convlab train` end to end."""

import subprocess
import sys

import pytest
import yaml

from convlab.cli import build_parser, main
from convlab.errors import ConvlabError
from convlab.training import TrainConfig, resolve_config
from convlab.training.config import FIELDS

FILE = """\
model: mlp
epochs: 3
batch-size: 50          # dashes or underscores, as the flags are spelled
lr: 1e-3                # YAML 1.1 reads this as a string; it is coerced to a number
optimizer: adam
limit: 1000
image_size: 28
options:
  dropout: 0.1
"""


def test_flags_override_the_file_which_overrides_the_defaults(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(FILE)
    config = resolve_config(path, epochs=5, options={"hidden": [64]})
    assert config.epochs == 5  # the override
    assert (config.batch_size, config.lr, config.optimizer, config.limit) == (
        50,
        0.001,
        "adam",
        1000,
    )  # the file
    assert config.schedule == TrainConfig.schedule and config.seed == 0  # the defaults
    assert config.options == {"dropout": 0.1, "hidden": [64]}  # model options merge key by key
    assert config.image_size == [28, 28]


def test_bad_settings_name_the_setting_and_what_is_accepted(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("epochz: 3\n")
    with pytest.raises(
        ConvlabError, match="In '.*bad.yaml': Unknown training setting 'epochz'; did you mean epochs"
    ):
        resolve_config(path)
    with pytest.raises(ConvlabError, match=r"epochs \(--epochs\) must be at least 1, got 0"):
        resolve_config(epochs=0)
    with pytest.raises(ConvlabError, match=r"lr \(--lr\) must be a number, got 'fast'"):
        resolve_config(lr="fast")
    with pytest.raises(ConvlabError, match=r"image_size \(--image-size\) '32y32' is not understood"):
        resolve_config(image_size="32y32")
    with pytest.raises(ConvlabError, match="Unknown augmentation 'flipp'"):
        resolve_config(augment="flipp,crop")
    with pytest.raises(ConvlabError, match=r"Unknown amp \(--amp\) 'fp8'.*Accepted: auto, bf16, off"):
        resolve_config(amp="fp8")
    with pytest.raises(
        ConvlabError,
        match=r"test_tta \(--test-tta\): Unknown test-time augmentation 'mirror'; accepted: none, flip, shift, tencrop",
    ):
        resolve_config(test_tta="mirror")
    assert (
        resolve_config(test_tta="none").test_tta is None
        and resolve_config(test_tta="shift").test_tta == "shift"
    )
    assert resolve_config(image_size="28x32").image_size == [28, 32]
    assert resolve_config(augment="flip, crop").augment == ["flip", "crop"]


def test_checkpoint_every_is_a_number_of_steps_from_the_file_the_flag_or_python(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("checkpoint-every: 50\n")
    assert resolve_config(path).checkpoint_every == 50
    assert resolve_config(checkpoint_every="20").checkpoint_every == 20  # as YAML may give it
    assert resolve_config().checkpoint_every is None  # at epoch ends only
    assert build_parser().parse_args(["train", "--checkpoint-every", "100"]).checkpoint_every == 100
    with pytest.raises(
        ConvlabError, match=r"^checkpoint_every \(--checkpoint-every\) must be at least 1, got 0\.$"
    ):
        resolve_config(checkpoint_every=0)


def test_crop_padding_comes_from_the_file_the_flag_or_python_and_is_checked_before_training(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text("crop-padding: 2\n")
    assert resolve_config(path).crop_padding == 2
    assert resolve_config().crop_padding is None  # an eighth of the image side
    assert build_parser().parse_args(["train", "--crop-padding", "5"]).crop_padding == 5
    with pytest.raises(ConvlabError, match=r"^crop_padding \(--crop-padding\) must be at least 1, got 0\.$"):
        resolve_config(crop_padding=0)
    # the upper bound is the image side, known once the data is loaded: said before the first epoch
    flags = ["train", "--model", "mlp", "--limit", "200", "--epochs", "1", "--augment", "crop"]
    assert main([*flags, "--crop-padding", "40", "--out", str(tmp_path / "wide")]) == 2
    error = capsys.readouterr().err
    assert (
        error.count("\n") == 1 and "must be a whole number of pixels from 1 to 28 (the shorter side" in error
    )
    assert not (tmp_path / "wide" / "state.pt").exists()
    assert main([*flags, "--crop-padding", "2", "--out", str(tmp_path / "run")]) == 0
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["crop_padding"] == 2


def test_what_yaml_reads_otherwise_than_meant_is_settled(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("amp: off\nlr: .nan\n")  # YAML 1.1 reads a bare off as false
    with pytest.raises(ConvlabError, match=r"^lr \(--lr\) must be a finite number, got nan\.$"):
        resolve_config(path)
    path.write_text("amp: off\n")
    assert resolve_config(path).amp == "off"


def test_every_flag_says_its_default_and_names_the_choices():
    parser = build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    helps = {action.dest: action.help for action in train_parser._actions if action.dest != "help"}
    assert "adamw" in helps["optimizer"] and "default momentum" in helps["optimizer"]
    assert "onecycle" in helps["schedule"] and "plateau" in helps["schedule"]
    assert "adagrad 0.01" in helps["lr"] and "rmsprop 0.001" in helps["lr"]
    for dest, text in helps.items():
        if dest not in ("config", "options"):
            assert "default" in text, dest


def test_every_training_setting_has_exactly_one_flag():
    parser = build_parser()
    train_parser = parser._subparsers._group_actions[0].choices["train"]
    # --nproc says how the command is launched (training.distributed), not what the run computes
    settings = [
        action.dest for action in train_parser._actions if action.dest not in ("help", "config", "nproc")
    ]
    assert sorted(settings) == sorted(FIELDS)  # --option KEY=VALUE fills options


def test_convlab_train_command_saves_the_resolved_configuration(tmp_path, capsys):
    path = tmp_path / "run.yaml"
    path.write_text(FILE)
    out = tmp_path / "run"
    code = main(
        ["train", "--config", str(path), "--epochs", "1", "--option", "hidden=[64]", "--out", str(out)]
    )
    assert code == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["batch_size"] == 50 and saved["lr"] == 0.001
    assert saved["options"] == {"dropout": 0.1, "hidden": [64]}
    printed = capsys.readouterr().out
    assert "epoch 1/1  train loss" in printed and f"run folder {out}" in printed

    # a ConvlabError is one line on stderr and exit status 2
    assert main(["train", "--model", "mlp", "--optimizer", "adamm", "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Unknown optimizer (--optimizer) 'adamm'" in error


@pytest.mark.parametrize("first", ["convlab.training", "convlab.exporting", "convlab.cli", "convlab"])
def test_convlab_train_and_export_are_plain_functions_in_every_import_order(first):
    # A fresh interpreter per order: what `convlab.train` names must not depend on what was imported first.
    code = (
        f"import importlib, inspect; importlib.import_module({first!r}); import convlab, convlab.training, "
        "convlab.exporting; assert inspect.isfunction(convlab.train), convlab.train; "
        "assert inspect.isfunction(convlab.export), convlab.export; "
        "assert convlab.train is convlab.training.train and convlab.export is convlab.exporting.export"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
