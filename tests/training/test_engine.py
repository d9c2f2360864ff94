"""Training real small models on real Fashion-MNIST images: accuracy, run folder, resume, determinism, failures."""

import copy
import csv
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

import convlab.training.inputs as inputs
from convlab.checkpoint import load_checkpoint, read_record
from convlab.errors import ConvlabError
from convlab.evaluation import evaluate_model
from convlab.models import create_model
from convlab.training import Schedule, TrainConfig, build_optimizer, train, train_step
from convlab.training.engine import intra_op_threads

HEADER = "epoch,train_loss,train_top1,val_loss,val_top1,val_top5,lr,seconds,images_per_s"
# An MLP on 1,000 Fashion-MNIST images (900 train, 100 val): quick to train, yet far above chance.
QUICK = dict(
    model="mlp", data="fashion-mnist", limit=1000, batch_size=50, optimizer="adam", options={"hidden": [64]}
)


def metrics_rows(run_dir) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def without_timings(rows):
    return [{k: v for k, v in row.items() if k not in ("seconds", "images_per_s")} for row in rows]


@pytest.fixture(scope="module")
def lenet_run(tmp_path_factory):
    """LeNet-5 (ReLU, max pooling) trained for 2 epochs on 2,000 Fashion-MNIST images (1,800 train, 200 val)."""
    out = tmp_path_factory.mktemp("runs") / "lenet5"
    result = train(
        model="lenet5",
        data="fashion-mnist",
        limit=2000,
        epochs=2,
        batch_size=32,
        optimizer="adam",
        lr=0.002,
        schedule="cosine",
        activation="relu",
        options={"pool": "max"},
        augment="flip",
        out=out,
    )
    return result


def test_lenet5_learns_fashion_mnist_and_fills_the_run_folder(lenet_run):
    run_dir = lenet_run.run_dir
    assert lenet_run.epochs_completed == 2 and lenet_run.best_val_top1 > 0.6  # chance is 0.1
    assert lenet_run.test.n == 10000 and lenet_run.test.top1 > 0.6  # the official test split, best weights
    for name in (
        "config.yaml",
        "metrics.csv",
        "last.safetensors",
        "best.safetensors",
        "state.pt",
        "train.log",
        "report.md",
        "curves.png",
        "confusion.png",
        "filters.png",
        "gradcam.png",
    ):
        assert (run_dir / name).is_file(), name
    report = (run_dir / "report.md").read_text()
    assert "![filters](filters.png)" in report and "![gradcam](gradcam.png)" in report
    assert list((run_dir / "tb").glob("events.out.tfevents.*"))
    assert (run_dir / "metrics.csv").read_text().splitlines()[0] == HEADER
    rows = metrics_rows(run_dir)
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert float(rows[1]["val_top1"]) == pytest.approx(lenet_run.best_val_top1, abs=1e-6)

    log = (run_dir / "train.log").read_text()
    # Fashion-MNIST is 28x28; LeNet-5 takes exactly 32x32, so the data was resized and the log says so
    assert "resizing fashion-mnist to 32x32" in log
    assert re.search(
        r"^epoch 2/2  train loss \d\.\d{3} top1 \d+\.\d%  val loss \d\.\d{3} top1 \d+\.\d% "
        r"top5 \d+\.\d%  lr [\d.e-]+  \d+\.\d s  \d+ img/s$",
        log,
        re.MULTILINE,
    )
    assert f"test top-1 {lenet_run.test.top1:.2%}" in log

    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (
        saved["model"] == "lenet5" and saved["activation"] == "relu" and saved["options"] == {"pool": "max"}
    )
    assert set(saved) == set(TrainConfig().to_dict())


def test_best_checkpoint_round_trip_gives_the_recorded_val_accuracy(lenet_run, fashion_mnist):
    record = read_record(lenet_run.run_dir / "best.safetensors")
    assert record.input.size == (32, 32) and record.input.channels == 1
    assert record.classes[0] == "T-shirt/top" and record.epoch == lenet_run.best_epoch
    assert record.data.name == "fashion-mnist" and record.config["limit"] == 2000

    model, record = load_checkpoint(lenet_run.run_dir / "best.safetensors")
    bundle = fashion_mnist(limit=2000, image_size=(32, 32))
    again = evaluate_model(model, bundle, "val")
    assert again.top1 == record.metrics["val_top1"] == lenet_run.best_val_top1


def test_a_folder_holding_a_run_is_never_overwritten(lenet_run):
    run_dir = lenet_run.run_dir
    before = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    with pytest.raises(ConvlabError, match="already holds a run .*--resume"):
        train(model="mlp", data="fashion-mnist", epochs=1, out=run_dir)
    assert {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()} == before


class Sabotaged:
    """A DataBundle whose training loader misbehaves from the second batch of ``epoch``."""

    def __init__(self, bundle, epoch: int, failure: str) -> None:
        self._bundle, self._epoch, self._failure = bundle, epoch, failure

    def __getattr__(self, name):
        return getattr(self._bundle, name)

    def loader(self, split, batch_size, **options):
        batches = self._bundle.loader(split, batch_size, **options)
        if split != "train" or options.get("epoch") != self._epoch:
            return batches
        return SabotagedLoader(batches, self._failure)


class SabotagedLoader:
    def __init__(self, batches, failure):
        self.batches, self.failure = batches, failure

    def __len__(self):
        return len(self.batches)

    def __iter__(self):
        for step, (images, labels) in enumerate(self.batches):
            if step == 1 and self.failure == "interrupt":
                raise KeyboardInterrupt  # as Ctrl-C would
            if step == 1 and self.failure == "infinite pixels":
                images = images * float("inf")
            yield images, labels


def sabotage(monkeypatch, epoch: int, failure: str) -> None:
    load_data = inputs.load_data  # the name training loads its data through
    monkeypatch.setattr(inputs, "load_data", lambda *a, **k: Sabotaged(load_data(*a, **k), epoch, failure))


def test_resume_after_ctrl_c_continues_exactly_and_same_seed_gives_same_numbers(
    tmp_path, monkeypatch, capsys
):
    # dropout (torch RNG), flip (the loader's seeded stream) and onecycle (scheduler state) all have to resume
    settings = dict(
        QUICK, epochs=2, schedule="onecycle", augment="flip", options={"hidden": [64], "dropout": 0.2}
    )
    straight = train(**settings, out=tmp_path / "straight")

    sabotage(monkeypatch, epoch=2, failure="interrupt")
    with pytest.raises(KeyboardInterrupt):
        train(**settings, out=tmp_path / "interrupted")
    monkeypatch.undo()
    assert "Continue with: convlab train --resume" in capsys.readouterr().out
    interrupted = tmp_path / "interrupted"
    assert [row["epoch"] for row in metrics_rows(interrupted)] == ["1"]
    assert read_record(interrupted / "last.safetensors").epoch == 1
    # same seed, same data: the same numbers
    assert without_timings(metrics_rows(interrupted)) == without_timings(metrics_rows(straight.run_dir)[:1])

    resumed = train(resume=interrupted)
    assert resumed.epochs_completed == 2
    assert without_timings(metrics_rows(interrupted)) == without_timings(metrics_rows(straight.run_dir))
    weights = load_file(interrupted / "last.safetensors")
    reference = load_file(straight.run_dir / "last.safetensors")
    assert weights.keys() == reference.keys() and all(torch.equal(weights[k], reference[k]) for k in weights)

    other_seed = train(**dict(settings, epochs=1, seed=1), out=tmp_path / "seed1")
    assert (
        metrics_rows(other_seed.run_dir)[0]["train_loss"] != metrics_rows(straight.run_dir)[0]["train_loss"]
    )


def test_resume_with_more_epochs_extends_the_run(tmp_path):
    settings = dict(QUICK, schedule="constant")
    two = train(**settings, epochs=2, out=tmp_path / "two")
    one = train(**settings, epochs=1, out=tmp_path / "one")
    extended = train(resume=one.run_dir, epochs=2)
    assert extended.epochs_completed == 2
    assert yaml.safe_load((one.run_dir / "config.yaml").read_text())["epochs"] == 2
    assert without_timings(metrics_rows(one.run_dir)) == without_timings(metrics_rows(two.run_dir))
    with pytest.raises(ConvlabError, match="cannot change lr"):
        train(resume=one.run_dir, lr=0.5)


def test_nan_loss_stops_with_advice_and_keeps_the_last_good_epoch(tmp_path, monkeypatch):
    with pytest.raises(
        ConvlabError, match=r"loss became (nan|inf) at epoch 1, step \d+.*lower --lr.*1e\+06.*--clip-norm"
    ):
        train(**dict(QUICK, optimizer="sgd", lr=1e6, epochs=2), out=tmp_path / "absurd")
    assert not (tmp_path / "absurd" / "last.safetensors").exists()

    sabotage(monkeypatch, epoch=2, failure="infinite pixels")
    with pytest.raises(ConvlabError, match="at epoch 2, step 2; the run folder keeps epoch 1"):
        train(**dict(QUICK, epochs=3), out=tmp_path / "poisoned")
    kept = tmp_path / "poisoned"
    assert read_record(kept / "last.safetensors").epoch == 1
    assert all(torch.isfinite(t).all() for t in load_file(kept / "last.safetensors").values())
    assert [row["epoch"] for row in metrics_rows(kept)] == ["1"]


class PoisonsItsStatistics(nn.Module):
    """A network of yours whose batch norm mean goes NaN from its ``at``-th training batch on, while the
    loss stays finite (training mode normalises with the batch's own statistics): what convlab.speed's
    bitwise ReLU leaves behind when a NaN appears inside a network, since it turns the NaN into a number."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.fc, self.bn = nn.Linear(784, 10), nn.BatchNorm1d(10)
        self.batches, self.at = 0, at

    def forward(self, x):
        if self.training and x.device.type != "meta":
            self.batches += 1
            if self.batches >= self.at:  # before this batch's graph holds it
                self.bn.running_mean.fill_(float("nan"))
        return self.bn(self.fc(x.flatten(1)))


def test_non_finite_weights_under_a_finite_loss_stop_the_run_before_they_are_saved(tmp_path):
    settings = dict(QUICK, model=PoisonsItsStatistics(at=25), epochs=3)  # 1,000 images, 50 a batch
    with pytest.raises(
        ConvlabError,
        match=r"batch norm statistics became non-finite .* by epoch 2, step \d+, though the loss stayed "
        r"finite; the run folder keeps epoch 1.*lower --lr",
    ):
        train(**settings, out=tmp_path / "poisoned")
    kept = tmp_path / "poisoned"
    assert read_record(kept / "last.safetensors").epoch == 1
    assert all(torch.isfinite(t).all() for t in load_file(kept / "last.safetensors").values())


def test_early_stop_keeps_the_best_weights(tmp_path):
    # an lr of 1e-12 leaves the predictions unchanged, so val top-1 never improves after epoch 1
    result = train(**dict(QUICK, optimizer="sgd", lr=1e-12, epochs=5, early_stop=2), out=tmp_path / "stalled")
    assert result.stopped_early and result.epochs_completed == 3 and result.best_epoch == 1
    assert read_record(result.run_dir / "best.safetensors").epoch == 1
    assert read_record(result.run_dir / "last.safetensors").epoch == 3


def test_test_tta_tests_the_best_weights_through_its_views(tmp_path, fashion_mnist):
    result = train(**dict(QUICK, epochs=1, test_tta="shift"), out=tmp_path / "shifted")
    assert result.test.tta == "shift"
    model, _ = load_checkpoint(result.run_dir / "best.safetensors")
    bundle = fashion_mnist(limit=1000)
    again = evaluate_model(model, bundle, "test", tta="shift")
    assert again.top1 == result.test.top1 and again.loss == pytest.approx(result.test.loss, rel=1e-6)
    assert f"test top-1 {result.test.top1:.2%}" in (result.run_dir / "train.log").read_text()
    assert "(best weights, test-time augmentation shift)" in (result.run_dir / "train.log").read_text()
    assert "test-time augmentation shift" in (result.run_dir / "report.md").read_text()


def test_bf16_autocast_trains(tmp_path):
    result = train(**dict(QUICK, epochs=2, amp="bf16"), out=tmp_path / "bf16")
    assert result.best_val_top1 > 0.6  # chance is 0.1; the bar float32 clears with these settings too


def test_settings_that_do_not_fit_the_data_are_refused(tmp_path):
    with pytest.raises(
        ConvlabError, match="--num-classes 5 does not match data 'fashion-mnist', which has 10"
    ):
        train(**QUICK, num_classes=5, out=tmp_path / "five")
    with pytest.raises(
        ConvlabError,
        match=r"Unknown optimizer \(--optimizer\) 'adamm'.*Accepted: adadelta, adagrad, adam, adamw",
    ):
        train(model="mlp", optimizer="adamm", out=tmp_path / "x")
    with pytest.raises(ConvlabError, match=r"Unknown schedule \(--schedule\) 'cosin'; did you mean cosine"):
        train(model="mlp", schedule="cosin", out=tmp_path / "x")
    with pytest.raises(ConvlabError, match="fashion-mnistt.*fashion-mnist"):
        train(model="mlp", data="fashion-mnistt", out=tmp_path / "x")
    assert not (tmp_path / "x").exists() and not (tmp_path / "five" / "config.yaml").exists()


def test_thread_settings_never_exceed_the_process_and_are_given_back():
    before = torch.get_num_threads()  # 1 in the test suite (tests/conftest.py)
    with intra_op_threads("auto"):
        assert torch.get_num_threads() <= before  # auto only lowers: to the cores other processes leave idle
    with intra_op_threads(None):
        assert torch.get_num_threads() == before
    with intra_op_threads(2):
        assert torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_googlenet_loss_adds_0_3_of_each_auxiliary_head():
    model = create_model("googlenet", num_classes=10, in_chans=3)
    twin = copy.deepcopy(model)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])

    torch.manual_seed(1)  # the same dropout masks in both forward passes
    logits, aux1, aux2 = twin.train()(images)
    main = nn.functional.cross_entropy(logits, labels)
    expected = (
        main
        + 0.3 * nn.functional.cross_entropy(aux1, labels)
        + 0.3 * nn.functional.cross_entropy(aux2, labels)
    )

    optimizer = build_optimizer(model, "momentum")
    schedule = Schedule(optimizer, "constant", epochs=1, steps_per_epoch=1)
    torch.manual_seed(1)
    loss, returned_logits = train_step(
        model.train(),
        images,
        labels,
        optimizer,
        schedule,
        nn.CrossEntropyLoss(),
        TrainConfig(amp="off", channels_last=False),
    )
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() > main.item() + 0.1  # the auxiliary terms are really in it
    assert torch.allclose(returned_logits, logits.detach())
