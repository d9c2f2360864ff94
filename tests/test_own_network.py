"""Your own network, end to end: a 15-line CNN in a file of yours, trained on the real digits set, then
evaluated, predicted, exported, served, visualised, summarised, resumed and fine-tuned from its run folder
after the original file is gone (the run folder's copy, model.py, is what rebuilds it)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn

import convlab
from convlab.checkpoint import load_checkpoint, read_record
from convlab.cli import main
from convlab.data import load_data
from tests.helpers import assert_png

MODEL_SOURCE = '''"""A small CNN of my own: two convolutions, global average pooling, one linear layer."""
from torch import nn


def tinycnn(num_classes, in_chans, width=16):
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, num_classes),
    )
'''
WIDTH = 12  # given as an option, so the record must carry it for the rebuilt network to fit the weights
# conv 1 -> 12 (3x3) + bias, conv 12 -> 24 (3x3) + bias, linear 24 -> 10 + bias
PARAMETERS = (1 * 12 * 9 + 12) + (12 * 24 * 9 + 24) + (24 * 10 + 10)
# Adam at 0.01 in batches of 32: 40 steps an epoch on digits' 1,293 training images; 6 epochs reach
# about 89% test top-1 in a few seconds on one thread.
TRAINING = dict(
    data="digits", epochs=6, batch_size=32, optimizer="adam", lr=0.01, threads=1, options={"width": WIDTH}
)
SAMPLES = 12


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    """A run folder trained from ``tinycnn.py:tinycnn``, whose original file was then deleted."""
    home = tmp_path_factory.mktemp("mine")
    source = home / "tinycnn.py"
    source.write_text(MODEL_SOURCE)
    result = convlab.train(model=f"{source}:tinycnn", out=str(home / "run"), **TRAINING)
    source.unlink()  # from here on only the run folder's copy can rebuild the network
    return result


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory):
    """The first test images of digits as 8 x 8 gray PNG files, and their labels."""
    bundle = load_data("digits")
    images, labels = next(iter(bundle.loader("test", SAMPLES)))
    pixels = ((images[:, 0] * bundle.std[0] + bundle.mean[0]) * 255).round().clamp(0, 255).to(torch.uint8)
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for index, picture in enumerate(pixels.numpy()):
        path = folder / f"digit-{index:02d}.png"
        Image.fromarray(picture, mode="L").save(path)
        paths.append(path)
    return paths, labels.tolist()


def direct_top1(run_dir: Path, paths: list[Path]) -> list[int]:
    """The rebuilt network's top class for each file, computed here from the record's mean and std."""
    model, record = load_checkpoint(run_dir)
    pixels = np.stack([np.asarray(Image.open(p), dtype=np.float32) / 255 for p in paths])
    batch = (torch.from_numpy(pixels)[:, None] - record.input.mean[0]) / record.input.std[0]
    with torch.no_grad():
        return model(batch).argmax(1).tolist()


def test_the_run_folder_keeps_a_copy_of_the_file_and_its_record_names_it(own_run):
    run_dir = own_run.run_dir
    assert (run_dir / "model.py").read_text() == MODEL_SOURCE
    document = read_record(run_dir).to_dict()["model"]
    assert document == {
        "name": "tinycnn",
        "num_classes": 10,
        "in_chans": 1,
        "input_size": [1, 8, 8],
        "init": "default",
        "options": {"width": WIDTH},
        "code": {
            "form": "file",
            "function": "tinycnn",
            "file": "model.py",
            "sha256": hashlib.sha256(MODEL_SOURCE.encode()).hexdigest(),
        },
    }
    assert own_run.run_dir.name == "run" and own_run.config.model.endswith("tinycnn.py:tinycnn")
    first, second, third = (run_dir / "train.log").read_text().splitlines()[:3]
    # your network gets the zoo's automatic precision and fast layers, then trains
    assert first.startswith("precision: float32") and second.startswith("fast layers (the same sums")
    assert third.startswith("training")


def test_eval_rebuilds_it_from_the_copy_and_matches_the_test_top1_of_training(own_run):
    assert own_run.test.top1 > 0.8  # it learned: the digits are not guessed (10%)
    result = convlab.evaluate(own_run.run_dir, write=False, device="cpu")
    assert result.top1 == own_run.test.top1 and result.n == 359


def test_eval_from_the_command_line_writes_its_result_beside_the_copy(own_run, capsys):
    assert main(["eval", str(own_run.run_dir), "--json", "--device", "cpu"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["top1"] == own_run.test.top1


def test_predict_gives_the_rebuilt_networks_answer_for_each_file(own_run, digit_files):
    paths, labels = digit_files
    answers = convlab.predict(own_run.run_dir, paths, topk=3, device="cpu")
    top1 = [int(answer["predictions"][0]["index"]) for answer in answers]
    assert top1 == direct_top1(own_run.run_dir, paths)
    assert sum(t == y for t, y in zip(top1, labels)) >= 9  # of 12: the network at about 89% test top-1
    assert all(len(answer["predictions"]) == 3 for answer in answers)


def test_onnx_export_records_the_file_and_gives_the_same_logits(own_run, tmp_path, digit_files):
    from convlab.exporting.runtime import load_exported

    result = convlab.export(own_run.run_dir, "onnx", out=tmp_path / "deploy" / "digits.onnx")
    assert result.path.is_file() and result.max_abs_diff < 1e-4
    # the exported file's record names a copy of the source beside it, as a checkpoint's does
    assert (tmp_path / "deploy" / "model.py").read_text() == MODEL_SOURCE
    onnx_model, record = load_exported(result.path)
    assert record.model.code.file == "model.py" and record.model.options == {"width": WIDTH}
    model, checkpoint_record = load_checkpoint(own_run.run_dir)
    batch = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.allclose(onnx_model(batch), model(batch), atol=1e-4)
    assert record.classes == checkpoint_record.classes


def test_the_service_answers_with_the_networks_prediction(own_run, digit_files):
    from fastapi.testclient import TestClient

    from convlab.serve import create_app

    paths, _ = digit_files
    with TestClient(create_app(own_run.run_dir, device="cpu")) as client:
        card = client.get("/model").json()
        assert card["name"] == "tinycnn" and card["parameters"] == PARAMETERS
        assert card["options"] == {"width": WIDTH}
        answer = client.post("/predict", files={"file": (paths[0].name, paths[0].read_bytes(), "image/png")})
    assert answer.status_code == 200, answer.text
    assert int(answer.json()["predictions"][0]["index"]) == direct_top1(own_run.run_dir, paths[:1])[0]


def test_grad_cam_explains_the_predicted_digit(own_run, digit_files, tmp_path):
    paths, _ = digit_files
    picture = convlab.viz.grad_cam(own_run.run_dir, paths[0], out=tmp_path, device="cpu")
    assert picture.predicted == direct_top1(own_run.run_dir, paths[:1])[0] == picture.target
    assert picture.array.shape == (8, 8) and 0 <= picture.array.min() and picture.array.max() <= 1
    assert_png(picture.png)


def test_summary_of_the_run_folder_and_of_the_file_reference(own_run, capsys):
    assert main(["summary", str(own_run.run_dir), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["model"] == "tinycnn" and document["input"] == [1, 8, 8]
    assert document["totals"]["params"] == PARAMETERS
    copy = own_run.run_dir / "model.py"
    command = [
        "summary",
        f"{copy}:tinycnn",
        "--input",
        "3x64x64",
        "--num-classes",
        "10",
        "--option",
        "width=12",
    ]
    assert main([*command, "--json"]) == 0
    colour = json.loads(capsys.readouterr().out)
    # in_chans follows the input: the first convolution takes 3 channels (2 x 108 more weights)
    assert colour["input"] == [3, 64, 64] and colour["totals"]["params"] == PARAMETERS + 2 * 108
    assert colour["totals"]["macs"] == 64 * 64 * 12 * 27 + 32 * 32 * 24 * 108 + 24 * 10


def test_summary_of_a_file_reference_needs_the_input_size(own_run, capsys):
    assert main(["summary", f"{own_run.run_dir / 'model.py'}:tinycnn"]) == 2
    assert "--input CxHxW" in capsys.readouterr().err


def test_a_copied_run_folder_resumes_from_its_own_copy(own_run, tmp_path, capsys):
    moved = tmp_path / "elsewhere" / "run"
    shutil.copytree(own_run.run_dir, moved)
    assert main(["train", "--resume", str(moved), "--epochs", "8"]) == 0
    rows = (moved / "metrics.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(1, 9))
    assert read_record(moved / "last.safetensors").epoch == 8
    assert read_record(moved / "last.safetensors").model.code.file == "model.py"
    assert sorted(p.name for p in moved.glob("*.py")) == ["model.py"]  # the copy was reused, not copied again


def test_fine_tuning_from_the_run_rebuilds_the_network_with_a_new_head(own_run, tmp_path):
    result = convlab.train(
        pretrained=str(own_run.run_dir),
        transfer="feature-extract",
        data="digits",
        classes=[0, 1, 2],
        epochs=1,
        threads=1,
        out=str(tmp_path / "three"),
    )
    record = read_record(result.run_dir)
    assert record.model.num_classes == 3 and record.model.options == {"width": WIDTH}
    assert (result.run_dir / "model.py").read_text() == MODEL_SOURCE
    source, _ = load_checkpoint(own_run.run_dir)
    tuned, _ = load_checkpoint(result.run_dir)
    # feature extraction: the backbone is the source's to the bit, the head is new (3 outputs)
    for key in ("0.weight", "0.bias", "3.weight", "3.bias"):
        assert torch.equal(source.state_dict()[key], tuned.state_dict()[key])
    assert tuned.state_dict()["7.weight"].shape == (3, 2 * WIDTH)


# ---- the other forms: the command line, a module path, a network object, a registered name


def quick(tmp_path, name: str) -> dict:
    """One short epoch on digits into ``tmp_path/name``: enough to write a run folder."""
    return dict(data="digits", epochs=1, batch_size=64, threads=1, out=str(tmp_path / name))


def test_the_command_line_takes_a_file_and_its_options_and_names_the_run_after_the_function(
    tmp_path, monkeypatch
):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "cnn.py").write_text(MODEL_SOURCE)
    monkeypatch.chdir(tmp_path)
    command = ["train", "--model", "nets/cnn.py:tinycnn", "--option", "width=4", "--data", "digits"]
    assert main([*command, "--epochs", "1", "--threads", "1"]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("tinycnn-digits-")
    spec = read_record(run_dir).model
    assert spec.options == {"width": 4} and spec.code.file == "model.py"
    assert sum(p.numel() for p in load_checkpoint(run_dir)[0].parameters()) == (
        (1 * 4 * 9 + 4) + (4 * 8 * 9 + 8) + (8 * 10 + 10)
    )


def test_a_module_path_is_recorded_as_the_module_and_rebuilds_by_importing_it(tmp_path, monkeypatch):
    (tmp_path / "ownnets_run.py").write_text(MODEL_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = convlab.train(model="ownnets_run:tinycnn", **quick(tmp_path, "run"))
    document = read_record(result.run_dir).to_dict()["model"]
    assert document["code"] == {"form": "module", "function": "tinycnn", "module": "ownnets_run"}
    assert not (result.run_dir / "model.py").exists()  # an importable module is not copied
    assert convlab.evaluate(result.run_dir, write=False, device="cpu").top1 == result.test.top1


NETWORK_CLASS = """
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10, width=8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
"""


def test_train_takes_a_network_object_trains_it_in_place_and_records_its_class(tmp_path, monkeypatch):
    (tmp_path / "ownnets_obj.py").write_text(NETWORK_CLASS)
    monkeypatch.syspath_prepend(str(tmp_path))
    from ownnets_obj import Net

    network = Net(width=6)
    before = network.head.weight.detach().clone()
    result = convlab.train(model=network, options={"width": 6}, **quick(tmp_path, "run"))
    assert not torch.equal(network.head.weight.detach().cpu(), before)  # trained in place, as Keras' fit does
    spec = read_record(result.run_dir).model
    assert (spec.name, spec.options, spec.code.form, spec.reference) == (
        "Net",
        {"width": 6},
        "module",
        "ownnets_obj:Net",
    )
    assert result.config.model == "ownnets_obj:Net"
    assert convlab.evaluate(result.run_dir, write=False, device="cpu").top1 == result.test.top1


def test_a_network_whose_class_cannot_be_imported_needs_the_same_code_and_says_so(tmp_path, capsys):
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
            self.head = nn.Linear(4, 10)

        def forward(self, x):
            return self.head(self.features(x).flatten(1))

    result = convlab.train(model=Local(), **quick(tmp_path, "run"))
    code = read_record(result.run_dir).to_dict()["model"]["code"]
    assert code["form"] == "unrecorded" and "convlab.load(RUN, model=Local(...))" in code["note"]
    assert main(["eval", str(result.run_dir), "--device", "cpu"]) == 2
    error = capsys.readouterr().err
    assert "load the run in Python with the same code: convlab.load(RUN, model=Local(...))" in error
    assert error.count("\n") == 1
    model, _ = convlab.load(result.run_dir, model=Local())
    bundle = load_data("digits")
    images, labels = next(iter(bundle.loader("test", 359)))
    with torch.no_grad():
        accuracy = (model(images).argmax(1) == labels).float().mean().item()
    assert accuracy == pytest.approx(result.test.top1, abs=1e-6)
    with pytest.raises(convlab.ConvlabError, match="convlab cannot rebuild"):
        convlab.train(resume=str(result.run_dir), epochs=2)
    resumed = convlab.train(resume=str(result.run_dir), epochs=2, model=Local())
    assert resumed.epochs_completed == 2
    # starting from it: the same code given again takes the source's tensors (its backbone frozen)
    frozen = convlab.train(
        model=Local(), pretrained=str(result.run_dir), transfer="feature-extract", **quick(tmp_path, "again")
    )
    source, tuned = (load_file(str(run / "best.safetensors")) for run in (result.run_dir, frozen.run_dir))
    assert torch.equal(source["features.0.weight"], tuned["features.0.weight"])
    assert not torch.equal(source["head.weight"], tuned["head.weight"])  # the head trained on


def test_a_registered_builder_trains_by_module_path_and_then_by_its_name(tmp_path, monkeypatch):
    from convlab.models._registry import _REGISTRY

    (tmp_path / "ownnets_reg.py").write_text(
        "import convlab\n" + MODEL_SOURCE.replace("def tinycnn", "@convlab.register_model\ndef regnet")
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("convlab.models._registry._REGISTRY", dict(_REGISTRY))  # the zoo stays as it was
    assert main(["train", "--model", "ownnets_reg:regnet", *quick_flags(tmp_path, "by-path")]) == 0
    assert main(["train", "--model", "regnet", *quick_flags(tmp_path, "by-name")]) == 0  # registered now
    for name in ("by-path", "by-name"):
        spec = read_record(tmp_path / name).model
        assert spec.name == "regnet" and spec.code == convlab.models.UserCode(
            "module", "regnet", module="ownnets_reg"
        )


def quick_flags(tmp_path, name: str) -> list[str]:
    return [
        "--data",
        "digits",
        "--epochs",
        "1",
        "--batch-size",
        "64",
        "--threads",
        "1",
        "--out",
        str(tmp_path / name),
    ]


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (
            "def net(in_chans):\n    return nn.Sequential(nn.Flatten(), nn.Linear(64, 5))",
            "Your network net returns Nx5 outputs, but digits has 10 classes: it must return logits N x 10",
        ),
        (
            "def net(num_classes):\n    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(num_classes))",
            "Your network net starts with '0', which takes 3 input channels, but digits images have 1; "
            "build it with the in_chans it is given (in_chans=1), or convert the images with --in-chans 3.",
        ),
        (
            "def net(num_classes, in_chans):\n    return nn.Conv2d(in_chans, num_classes, 3)",
            "Your network net returns Nx10x6x6 outputs, but digits has 10 classes",
        ),
    ],
)
def test_a_network_that_does_not_fit_the_data_is_refused_before_training(tmp_path, builder, message):
    source = tmp_path / "net.py"
    source.write_text(f"from torch import nn\n\n\n{builder}\n")
    with pytest.raises(convlab.ConvlabError) as caught:
        convlab.train(model=f"{source}:net", **quick(tmp_path, "run"))
    assert message in str(caught.value)
    assert not (tmp_path / "run" / "last.safetensors").exists()
