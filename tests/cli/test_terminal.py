"""The terminal, for people: answers at once where no network is needed, "did you mean" for every typo,
no warnings from the libraries underneath, and progress lines that say only what is true."""

import csv
import io
import json
import subprocess
import sys
import textwrap

import pytest
from rich.console import Console

import convlab
from convlab.cli import build_parser, main
from convlab.errors import ConvlabError
from convlab.training.progress import TrainProgress, epoch_line

COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


def run_in_fresh_python(code: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``code`` in a new interpreter: its own sys.modules, and Python's own warning filters (not pytest's)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def test_conv_arith_and_every_usage_error_answer_without_torch():
    usage_errors = [[command, "--no-such-flag"] for command in COMMANDS]
    usage_errors += [["train", "--optimzer", "adam"], ["trian"], ["conv-arith", "--size", "7"]]
    usage_errors += [["train", "--optimizer", "adamm"], ["train", "--epochs", "0"]]  # checked before torch
    usage_errors += [["summary", "lenet5", "--option", "stride_in"]]
    code = f"""
        import contextlib, io, json, sys
        from convlab.cli import main

        def answer(argv):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                try:
                    return [main(argv), out.getvalue()]
                except SystemExit as stop:
                    return [stop.code, out.getvalue()]

        arith = answer(["conv-arith", "--size", "32", "--kernel", "5", "--padding", "2"])
        errors = [answer(argv)[0] for argv in {usage_errors!r}]
        print(json.dumps({{"arith": arith, "errors": errors, "torch": "torch" in sys.modules}}))
    """
    completed = run_in_fresh_python(code)
    assert completed.returncode == 0, completed.stderr
    answer = json.loads(completed.stdout)
    assert answer["arith"][0] == 0 and "(32 - 5 + 2*2)/1 + 1 = 32 -> 32x32" in answer["arith"][1]
    assert answer["errors"] == [2] * len(usage_errors)
    assert answer["torch"] is False


def test_a_mistyped_flag_or_command_gets_did_you_mean(capsys):
    cases = [
        (
            "train --optimzer adam",
            "convlab train: error: unrecognized argument --optimzer; did you mean --optimizer?",
        ),
        ("train --batchsize=32", "unrecognized argument --batchsize; did you mean --batch-size?"),
        # named even though --kernel then seems missing
        ("conv-arith --size 7 --kernl 3", "unrecognized argument --kernl; did you mean --kernel?"),
        ("--verison", "convlab: error: unrecognized argument --verison; did you mean --version?"),
        ("trian", "argument COMMAND: invalid choice 'trian'; did you mean train"),
        (
            "train --amp bf61",
            "argument --amp: invalid choice 'bf61'; did you mean bf16? (choose from auto, off, bf16)",
        ),
        ("data lsit", "invalid choice 'lsit'; did you mean list?"),
        ("models --jsn", "convlab models: error: unrecognized argument --jsn; did you mean --json?"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as stop:
            main(argv.split())
        assert stop.value.code == 2
        assert message in capsys.readouterr().err.splitlines()[-1], argv
    with pytest.raises(SystemExit):
        main(["summary", "lenet5", "extra"])
    assert capsys.readouterr().err.splitlines()[-1] == "convlab summary: error: unrecognized argument: extra"


def test_a_mistyped_setting_gets_the_same_answer_from_yaml_python_and_the_command_line(tmp_path, capsys):
    config = tmp_path / "settings.yaml"
    config.write_text("model: mlp\noptimzer: adam\n")
    assert main(["train", "--config", str(config), "--out", str(tmp_path / "run")]) == 2
    from_yaml = capsys.readouterr().err
    assert f"In '{config}': Unknown training setting 'optimzer'; did you mean optimizer" in from_yaml
    assert "see `convlab train --help`" in from_yaml
    with pytest.raises(ConvlabError, match="Unknown training setting 'optimzer'; did you mean optimizer"):
        convlab.train(model="mlp", optimzer="adam", out=tmp_path / "run")

    # a bad value: one sentence naming the setting as Python and YAML write it and the flag
    assert main(["train", "--optimizer", "adamm", "--out", str(tmp_path / "run")]) == 2
    from_cli = capsys.readouterr().err.strip().removeprefix("convlab: error: ")
    with pytest.raises(ConvlabError) as from_python:
        convlab.train(optimizer="adamm", out=tmp_path / "run")
    assert from_cli == str(from_python.value)
    assert from_cli.startswith("Unknown optimizer (--optimizer) 'adamm'; did you mean adam")
    assert main(["train", "--batch-size", "0"]) == 2
    assert "batch_size (--batch-size) must be at least 1, got 0." in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_training_lines_cap_top_k_at_the_number_of_classes():
    row = dict(train_loss=0.5, train_top1=0.8, val_loss=0.4, val_top1=0.85, val_top5=1.0, lr=0.01)
    row.update(seconds=1.0, images_per_s=100.0)
    two = epoch_line(1, 3, row, num_classes=2)
    assert "val loss 0.400 top1 85.0% top2 100.0%" in two and "top5" not in two
    assert "top5 100.0%" in epoch_line(1, 3, row, num_classes=10)


def test_the_progress_bar_shows_no_figures_before_the_first_step():
    screen = io.StringIO()
    progress = TrainProgress(
        None, interactive=True, console=Console(file=screen, force_terminal=True, width=120)
    )
    progress.start_epoch(1, 2, steps=10)
    progress._bar.refresh()
    before = screen.getvalue()
    assert "epoch 1/2" in before and "0/10" in before
    assert "nan" not in before and "loss" not in before and "img/s" not in before
    progress.update(3, loss=0.512, top1=0.75, images_per_s=1234.0)
    progress._bar.refresh()
    assert "loss 0.512  top1 75.0%  1234 img/s" in screen.getvalue()
    progress.close()


def lrs(run_dir) -> list[float]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return [float(row["lr"]) for row in csv.DictReader(handle)]


@pytest.mark.slow
def test_resuming_with_more_epochs_continues_the_schedule_and_nothing_warns(tmp_path):
    # train 2 epochs, resume to 4, then evaluate, predict, export and summarise, as a user would:
    # in a fresh interpreter with Python's own warning filters, each step's stderr kept
    quick = ["--model", "mlp", "--option", "hidden=[32]", "--data", "digits", "--optimizer", "momentum"]
    image = tmp_path / "digit.png"
    steps = {
        "train": ["train", *quick, "--schedule", "onecycle", "--epochs", "2", "--out", str(tmp_path / "run")],
        "resume": ["train", "--resume", str(tmp_path / "run"), "--epochs", "4"],
        "straight": [
            "train",
            *quick,
            "--schedule",
            "onecycle",
            "--epochs",
            "4",
            "--out",
            str(tmp_path / "four"),
        ],
        "eval": ["eval", str(tmp_path / "run")],
        "predict": ["predict", str(tmp_path / "run"), str(image)],
        "export": ["export", str(tmp_path / "run"), "--out", str(tmp_path / "model.onnx")],
        "summary": ["summary", "resnet18"],
    }
    code = f"""
        import contextlib, io, json, sys
        import numpy as np
        from PIL import Image
        from convlab.cli import main

        Image.fromarray((np.arange(64).reshape(8, 8) * 4).astype(np.uint8)).save({str(image)!r})
        answers = {{}}
        for step, argv in {steps!r}.items():
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                answers[step] = [main(argv), err.getvalue()]
        print(json.dumps(answers))
    """
    completed = run_in_fresh_python(code, timeout=600)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == ""
    answers = json.loads(completed.stdout)
    assert answers == {step: [0, ""] for step in steps}
    # the resumed epochs learn at the rates of a run that was given 4 epochs from the start
    resumed, straight = lrs(tmp_path / "run"), lrs(tmp_path / "four")
    assert len(resumed) == len(straight) == 4
    assert resumed[2:] == pytest.approx(straight[2:], rel=1e-5)
    assert resumed[1] != pytest.approx(straight[1], rel=1e-3)  # epoch 2 ran under the 2-epoch curve


@pytest.mark.parametrize("columns", [80, 50])
def test_a_long_precision_sentence_wraps_to_the_terminal_and_keeps_every_word(monkeypatch, capsys, columns):
    from convlab.cli.output import print_wrapped

    reason = (
        "bf16 autocast, channels_last (auto: this CPU has AMX bf16 units and resnet18 does 1.81 G multiply-adds "
        "per 3x224x224 image, at least the 1 M where bf16 pays)"
    )
    monkeypatch.setenv("COLUMNS", str(columns))
    print_wrapped("precision", reason)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) > 1 and all(len(line) <= columns for line in lines)
    assert lines[0].startswith("precision: bf16 autocast") and all(
        line.startswith(" " * 11) for line in lines[1:]
    )
    assert " ".join(line.strip() for line in lines) == f"precision: {reason}"


def test_training_notes_wrap_between_words_in_a_terminal_and_stay_whole_in_the_log(tmp_path, capsys):
    row = dict(train_loss=0.5, train_top1=0.8, val_loss=0.4, val_top1=0.85, val_top5=0.99, lr=0.01)
    row.update(seconds=12.3, images_per_s=5120.0)
    line = epoch_line(12, 47, row, num_classes=10)
    assert len(line) > 80  # with validation figures an epoch's line is wider than an 80-column terminal
    log = tmp_path / "train.log"
    terminal = TrainProgress(log, interactive=True, console=Console(file=io.StringIO(), width=80))
    terminal.note(line)
    terminal.note("precision: float32 (as given)")
    shown = capsys.readouterr().out.splitlines()
    assert len(shown) == 3 and all(len(text) <= 80 for text in shown)
    assert shown[1].startswith("  ") and shown[2] == "precision: float32 (as given)"
    assert " ".join(text.strip() for text in shown[:2]).split() == line.split()  # every word, none cut
    assert log.read_text().splitlines() == [line, "precision: float32 (as given)"]
    TrainProgress(None, interactive=False).note(line)  # a pipe or CI log: one whole line
    assert capsys.readouterr().out == line + "\n"
