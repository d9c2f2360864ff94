"""`convlab export`: prints where the file went and the check's figures; bad input is one error line."""

from __future__ import annotations

import re

from convlab.cli import main


def test_export_command_prints_the_figures_of_the_check(make_checkpoint, capsys):
    checkpoint = make_checkpoint("lenet5", 1, 32)

    assert main(["export", str(checkpoint.parent), "--format", "torchscript", "--check-samples", "4"]) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(
        f"Exported lenet5 from {checkpoint} to {checkpoint.parent / 'model.torchscript.pt'} "
        "(TorchScript, dynamic batch, 0.3 MB)"
    )
    assert out[1].startswith(
        "Checked against PyTorch on 4 test images of digits, in batches of 1, 3: max |logit diff| "
    )
    difference, limit = re.search(r"max \|logit diff\| (\S+), mean \S+ \(limit (\S+)", out[1]).groups()
    assert float(difference) <= float(limit) and float(limit) >= 1e-4
    assert (checkpoint.parent / "model.torchscript.pt").is_file()


def test_export_command_writes_onnx_where_asked(make_checkpoint, capsys, tmp_path):
    checkpoint = make_checkpoint("lenet5", 1, 32)
    out = tmp_path / "shipped" / "digits.onnx"

    assert main(["export", str(checkpoint), "--out", str(out), "--opset", "18", "--check-samples", "3"]) == 0

    assert out.is_file()
    assert "(ONNX opset 18, dynamic batch" in capsys.readouterr().out


def test_bad_input_is_one_error_line(make_checkpoint, capsys):
    checkpoint = make_checkpoint("lenet5", 1, 32, trained=False)

    assert main(["export", str(checkpoint), "--format", "tflite"]) == 2
    assert capsys.readouterr().err == (
        "convlab: error: Unknown export format 'tflite'. Accepted: onnx, torchscript.\n"
    )
    assert main(["export", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("convlab: error: Checkpoint ") and "--allow-untrained" in err and err.count("\n") == 1
    )
    assert main(["export", str(checkpoint), "--format", "torchscript", "--allow-untrained"]) == 0
