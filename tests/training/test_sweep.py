"""convlab sweep: a grid of configurations, each a run folder, compared in one table and one plot."""

import csv
import json
import math

import pytest

from convlab.cli import main
from convlab.errors import ConvlabError
from convlab.training import sweeps as sweep_module
from convlab.training.sweeps import MAX_RUNS_WITHOUT_YES, parse_vary, plan_sweep, sweep
from tests.helpers import assert_png

# The digits set (1,797 8x8 images, resized to LeNet's 32x32): a one-epoch run takes a fraction of a second.
TINY = {"model": "lenet5", "data": "digits", "epochs": 1, "limit": 300}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "optimizers"
    return sweep(["optimizer=sgd,adam"], out=out, **TINY)


def test_a_sweep_trains_each_configuration_into_its_own_run_folder(finished):
    assert [row["optimizer"] for row in finished.rows] == ["sgd", "adam"]
    for run in finished.runs:
        run_dir = finished.sweep_dir / run["run"]
        assert (run_dir / "metrics.csv").is_file() and (run_dir / "tb").is_dir()
        assert run["status"] == "finished" and run["epochs"] == 1
        assert 0 < run["final_val_top1"] <= 1 and math.isfinite(run["final_train_loss"])
        assert run["params"] == 61_706  # LeNet-5 for 10 classes (docs/models.md)
        assert run["macs"] > 0
    # two optimizers give two different runs, not one run reported twice
    assert finished.runs[0]["final_train_loss"] != finished.runs[1]["final_train_loss"]


def test_the_sweep_writes_its_table_runs_and_curves(finished):
    table = (finished.sweep_dir / "sweep.md").read_text()
    for run in finished.runs:
        assert f"{run['final_val_top1']:.2%}" in table and f"({run['run']}/report.md)" in table
    assert "| optimizer | status | val top-1 |" in table
    with (finished.sweep_dir / "sweep.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [row["optimizer"] for row in rows] == ["sgd", "adam"]
    assert float(rows[1]["best_val_top1"]) == pytest.approx(finished.runs[1]["best_val_top1"])
    assert_png(finished.sweep_dir / "sweep.png")
    assert "optimizer" in finished.table().splitlines()[0]


def test_an_interrupted_sweep_resumes_and_skips_what_is_finished(tmp_path, monkeypatch):
    trained = []
    real = sweep_module.train_configuration

    def interrupted_at_the_second(sweep_dir, configuration, config):
        if len(trained) == 1:
            raise KeyboardInterrupt
        trained.append(configuration.folder)
        return real(sweep_dir, configuration, config)

    monkeypatch.setattr(sweep_module, "train_configuration", interrupted_at_the_second)
    with pytest.raises(KeyboardInterrupt):
        sweep(["lr=0.05,0.01"], out=tmp_path / "s", **TINY)
    saved = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert list(saved["runs"]) == trained == ["01-lr-0.05"]
    first_metrics = (tmp_path / "s" / "01-lr-0.05" / "metrics.csv").read_bytes()

    monkeypatch.setattr(
        sweep_module, "train_configuration", lambda *a: trained.append(a[1].folder) or real(*a)
    )
    result = sweep(resume=tmp_path / "s")
    assert trained == ["01-lr-0.05", "02-lr-0.01"]  # the first is not trained again
    assert (tmp_path / "s" / "01-lr-0.05" / "metrics.csv").read_bytes() == first_metrics
    assert [row["status"] for row in result.rows] == ["finished", "finished"]
    with pytest.raises(ConvlabError, match="holds a sweep already; continue it with --resume"):
        sweep(["lr=0.05,0.01"], out=tmp_path / "s", **TINY)


def test_repeats_report_mean_and_spread_over_seeds(tmp_path):
    result = sweep({"optimizer": ["adam"]}, repeat=2, out=tmp_path / "r", **TINY)
    assert [run["seed"] for run in result.runs] == [0, 1]
    (row,) = result.rows
    values = [run["final_val_top1"] for run in result.runs]
    assert row["runs"] == 2 and row["final_val_top1"] == pytest.approx(sum(values) / 2)
    assert row["final_val_top1_std"] == pytest.approx(abs(values[0] - values[1]) / math.sqrt(2))


def test_vary_reads_yaml_values_and_model_options():
    assert parse_vary("lr=0.1,0.01").values == (0.1, 0.01)
    assert parse_vary("lr=1e-3,3E-4,2.5e1").values == (0.001, 0.0003, 25.0)
    assert parse_vary("hidden=[500,150],[300]").values == ([500, 150], [300])
    plan = plan_sweep(["pool=max,avg", "lr=0.1,0.01"], TINY)
    assert [c.settings["options"]["pool"] for c in plan] == ["max", "max", "avg", "avg"]
    assert [c.settings["lr"] for c in plan] == [0.1, 0.01] * 2
    assert plan[0].folder == "01-pool-max-lr-0.1"
    # an option is varied only where every model of the sweep takes it (LeNet-5 of 1998 has no pool)
    with pytest.raises(ConvlabError, match=r"an option every model of the sweep takes \(activation"):
        plan_sweep(["pool=max,avg", "model=lenet5,lenet5_1998"], TINY)
    models = plan_sweep(["model=lenet5,lenet5_1998", "option.activation=relu,tanh"], TINY)
    assert [(c.settings["model"], c.settings["options"]["activation"]) for c in models][:2] == [
        ("lenet5", "relu"),
        ("lenet5", "tanh"),
    ]


@pytest.mark.parametrize(
    ("vary", "message"),
    [
        (["optimiser=sgd,adam"], "no training setting or model option of that name; did you mean optimizer"),
        (
            ["optimizer=sgd,adamm"],
            r"Configuration optimizer=adamm: Unknown optimizer \(--optimizer\) 'adamm'; did you mean adam",
        ),
        (["lr"], "not of the form NAME=V1,V2"),
        (["lr=0.1,0.1"], "names a value twice"),
        (["out=a,b"], "not a training setting a sweep can vary"),
        ([], "at least one --vary"),
    ],
)
def test_a_bad_vary_is_one_sentence_before_anything_trains(tmp_path, vary, message):
    with pytest.raises(ConvlabError, match=message):
        sweep(vary, out=tmp_path / "bad", **TINY)
    assert not (tmp_path / "bad").exists()


def test_a_large_sweep_asks_for_yes_and_dry_run_shows_the_plan(tmp_path):
    values = ",".join(str(seed) for seed in range(MAX_RUNS_WITHOUT_YES + 1))
    with pytest.raises(ConvlabError, match="give --yes to start it, or --dry-run"):
        sweep([f"seed={values}"], out=tmp_path / "big", **TINY)
    plan = sweep([f"seed={values}"], dry_run=True, **TINY)
    assert len(plan) == MAX_RUNS_WITHOUT_YES + 1 and not (tmp_path / "big").exists()


def test_the_command_line_sweep(tmp_path, capsys):
    assert main(["sweep", "--model", "lenet5", "--data", "digits", "--vary", "lr=0.1,0.01", "--dry-run"]) == 0
    assert "01-lr-0.1  lr=0.1" in capsys.readouterr().out
    assert main(["sweep", "--vary", "optimzer=sgd", "--out", str(tmp_path / "x")]) == 2
    assert "did you mean optimizer" in capsys.readouterr().err


def test_jobs_train_configurations_in_parallel_processes_with_the_cores_split(tmp_path):
    result = sweep(["optimizer=sgd,adam"], jobs=2, out=tmp_path / "p", **TINY)
    assert [row["status"] for row in result.rows] == ["finished", "finished"]
    for run in result.runs:
        log = (tmp_path / "p" / run["run"] / "train.log").read_text()
        assert "(1 thread)" in log or "(1 threads)" in log, log.splitlines()[:3]


def test_a_configuration_that_diverges_is_recorded_and_the_sweep_goes_on(tmp_path):
    # an MLP with ReLU: nothing bounds its outputs, so at this rate the loss overflows to inf in a step or two
    result = sweep(["lr=1e30,0.05"], out=tmp_path / "d", optimizer="sgd", **{**TINY, "model": "mlp"})
    assert [row["status"] for row in result.rows] == ["diverged", "finished"]
    assert result.runs[1]["final_val_top1"] > 0
    assert "| 1e+30 | diverged |" in (tmp_path / "d" / "sweep.md").read_text()
    saved = json.loads((tmp_path / "d" / "sweep.json").read_text())
    assert "The training loss became nan at epoch 1" in saved["runs"]["01-lr-1e+30"]["note"]


def test_with_logged_gradients_the_table_shows_how_they_reach_the_first_layer(tmp_path):
    deep = {**TINY, "model": "mlp", "options": {"hidden": [32] * 7}, "log_gradients": 2}
    result = sweep(["activation=sigmoid,relu"], out=tmp_path / "g", **deep)
    sigmoid, relu = (row["gradient_ratio"] for row in result.rows)
    assert sigmoid < 0.01 < relu  # eight sigmoid layers: the gradient all but vanishes before the input
    assert "grad first/last" in (tmp_path / "g" / "sweep.md").read_text()
    assert "train top-1" in result.table().splitlines()[0]
