"""The inspector's commands: `convlab summary`, `convlab models`, `convlab conv-arith`."""

import json
import subprocess
import sys

import pytest

from convlab.cli import main
from convlab.models import list_models


def test_summary_table(capsys):
    assert main(["summary", "lenet5"]) == 0
    out = capsys.readouterr().out
    assert "features.c1" in out and "6x28x28" in out and "4,704" in out
    assert "Parameters: 61,706" in out
    assert "FLOPs = 2 x MACs" in out


def test_summary_json_with_options_and_input(capsys):
    assert main(["summary", "resnet50", "--input", "3x224x224", "--option", "stride_in=1x1", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["input"] == [3, 224, 224]
    assert document["totals"]["macs"] / 1e9 == pytest.approx(3.8, rel=0.02)  # the paper's v1 figure


def test_summary_num_classes(capsys):
    assert main(["summary", "resnet18", "--num-classes", "10", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["layers"][-1]["name"] == "fc" and document["layers"][-1]["output_shape"] == [10]


@pytest.mark.parametrize("text", ["3x224", "abc"])
def test_summary_malformed_input(capsys, text):
    assert main(["summary", "resnet18", "--input", text]) == 2
    err = capsys.readouterr().err
    assert "CxHxW, e.g. 3x224x224 (or HxW, or a single size S for CxSxS with the model's channels)" in err
    assert "Traceback" not in err


def test_summary_unknown_model_suggests_names(capsys):
    assert main(["summary", "resnt18"]) == 2
    assert "did you mean resnet18" in capsys.readouterr().err


def test_summary_input_too_small(capsys):
    assert main(["summary", "lenet5", "--input", "1x28x28"]) == 2
    err = capsys.readouterr().err
    assert "vanishes in layer 'features.c5'" in err and "Use --input 1x32x32" in err


def test_summary_bad_option(capsys):
    assert main(["summary", "resnet18", "--option", "stride_in"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err


def test_models_json_lists_the_whole_zoo(capsys):
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == [info.name for info in list_models()]
    assert all("error" not in row for row in rows)
    by_name = {row["name"]: row for row in rows}
    assert by_name["resnet50"]["params"] == 25_557_032
    assert by_name["resnet50"]["macs"] / 1e9 == pytest.approx(4.09, rel=0.01)
    assert by_name["lenet5"]["input_size"] == [1, 32, 32] and by_name["lenet5"]["params"] == 61_706
    assert by_name["vgg16"]["year"] == 2014 and by_name["vgg16"]["family"] == "vgg"


def test_models_table(capsys):
    from convlab.analysis.format import print_zoo_table

    print_zoo_table(
        [
            {
                "name": "lenet5",
                "family": "lenet",
                "year": 1998,
                "paper": "LeCun et al.",
                "input_size": [1, 32, 32],
                "params": 61_706,
                "macs": 416_520,
            }
        ]
    )
    out = capsys.readouterr().out
    assert "lenet5" in out and "1x32x32" in out and "61,706" in out and "416.52 K" in out


def test_conv_arith_worked_out(capsys):
    assert main(["conv-arith", "--size", "7", "--kernel", "3", "--stride", "1"]) == 0
    assert "(7 - 3 + 2*0)/1 + 1 = 5 -> 5x5" in capsys.readouterr().out
    assert (
        main(
            [
                "conv-arith",
                "--size",
                "32",
                "--kernel",
                "5",
                "--padding",
                "2",
                "--in-channels",
                "3",
                "--out-channels",
                "10",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "parameters: (5*5*3 + 1)*10 = 760" in out and "32x32x10" in out


def test_conv_arith_does_not_fit_exits_1(capsys):
    assert main(["conv-arith", "--size", "7", "--kernel", "3", "--stride", "3"]) == 1
    out = capsys.readouterr().out
    assert "(7 - 3 + 2*0)/3 + 1 = 2.33: does not fit" in out
    assert "padding 1 gives (7 - 3 + 2*1)/3 + 1 = 3" in out
    assert main(["conv-arith", "--size", "7", "--kernel", "3", "--stride", "3", "--floor"]) == 0
    assert "PyTorch floors it to 2" in capsys.readouterr().out


def test_python_m_convlab_cli_summary_json():
    completed = subprocess.run(
        [sys.executable, "-m", "convlab.cli", "summary", "lenet5", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["totals"]["params"] == 61_706
    assert document["layers"][0]["output_shape"] == [6, 28, 28]
