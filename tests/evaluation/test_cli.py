"""`convlab eval` and `convlab predict` from the command line."""

import json

import torch
from PIL import Image

from convlab.cli import main


def test_eval_json_prints_one_document_with_the_figures(run_folder, capsys):
    assert main(["eval", str(run_folder), "--split", "val", "--json", "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert {"top1", "top5", "loss", "n", "per_class", "confusion", "error", "top5_error"} <= set(document)
    assert document["n"] == 200 and document["split"] == "val"
    assert len(document["confusion"]) == 10 and sum(map(sum, document["confusion"])) == 200
    assert [row["support"] for row in document["per_class"]] == [20] * 10  # the split is stratified
    assert document["top1"] > 0.7
    assert json.loads((run_folder / "eval-val.json").read_text())["top1"] == document["top1"]


def test_eval_prints_tables_with_the_confusion_matrix(run_folder, capsys):
    assert main(["eval", str(run_folder), "--split", "val", "--tta", "flip", "--device", "cpu"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps a table's title to the table's width
    assert "TTA flip" in out and "Per class" in out and "Confusion matrix" in out and "Ankle boot" in out


def test_eval_of_a_missing_run_is_one_error_line(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "no-such-run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("convlab: error: No checkpoint at") and err.count("\n") == 1


def test_predict_reports_an_unreadable_file_and_still_predicts_the_others(
    run_folder, tmp_path, capsys, fashion
):
    images, _ = next(iter(fashion.loader("test", 2)))
    pixels = ((images[:, 0] * fashion.std[0] + fashion.mean[0]) * 255).round().clamp(0, 255).to(torch.uint8)
    Image.fromarray(pixels[0].numpy(), mode="L").save(tmp_path / "a.png")
    Image.fromarray(pixels[1].numpy(), mode="L").convert("RGB").save(tmp_path / "b.jpg")
    (tmp_path / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    files = [str(tmp_path / name) for name in ("a.png", "b.jpg", "c.png")]

    assert main(["predict", str(run_folder), *files, "--topk", "2", "--json", "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    results = json.loads(captured.out)
    assert [r["image"] for r in results] == files
    assert [len(r["predictions"]) for r in results[:2]] == [2, 2]
    assert set(results[0]["predictions"][0]) == {"label", "index", "probability"}
    assert "c.png" in results[2]["error"]
    assert captured.err.count("\n") == 1 and "c.png" in captured.err

    assert main(["predict", str(run_folder), *files[:2], "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert files[0] in out and "%" in out


def test_the_command_line_offers_exactly_the_tta_modes_the_library_has():
    from convlab.choices import TTA_MODES
    from convlab.cli import eval_cmd

    assert eval_cmd.TTA_MODES == TTA_MODES
