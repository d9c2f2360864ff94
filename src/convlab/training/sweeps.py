"""Comparison sweeps: one configuration with some settings varied over a grid, each point trained into a
run folder of its own, then one table and overlaid curves of them all.

The lectures' claims (momentum beats plain SGD, Adam needs another learning rate, a deeper plain network
trains worse...) are comparisons; a sweep makes each one command. Every configuration is an ordinary run
folder inside the sweep folder, so ``tensorboard --logdir SWEEP`` overlays them, and ``eval``, ``predict``
and ``--resume`` work on each. sweep.json records the plan and every finished configuration as it ends:
``--resume`` continues an interrupted sweep, skipping what is done and resuming the run that was cut.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import re
import statistics
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from convlab.errors import ConvlabError, TrainingDiverged, closest_names
from convlab.files import atomic_write
from convlab.training.config import FIELDS, TrainConfig, resolve_config
from convlab.training.progress import TrainProgress

PLAN_FILE = "sweep.json"
TABLE_FILE = "sweep.md"
RUNS_FILE = "sweep.csv"
CURVES_FILE = "sweep.png"
LOG_FILE = "sweep.log"
FORMAT = 1
# A grid grows as a product: past this many runs a sweep asks for --yes (or --dry-run shows the plan),
# so that a typo such as a fourth --vary does not start hours of training unasked.
MAX_RUNS_WITHOUT_YES = 12
# Settings that say where and how a run is kept, not what it learns: a sweep sets them for each run.
NOT_VARIED = ("out", "resume", "folds", "fold")
OPTION_PREFIX = "option."  # --vary option.pool=max,avg names a model option where a setting has the name too


@dataclass(frozen=True)
class Variation:
    """One ``--vary``: a setting (or model option) and the values it takes, in the order given."""

    name: str
    values: tuple[Any, ...]
    option: bool = False  # a model option (TrainConfig.options[name]) rather than a TrainConfig field


@dataclass
class Configuration:
    """One point of the grid and one repeat of it: what ``train`` gets, and the run folder it writes."""

    point: int  # the grid point (configurations that differ only by their repeat share it)
    values: dict[str, Any]  # varied name -> value
    repeat: int
    folder: str
    settings: dict[str, Any]  # the overrides ``train`` gets on top of the sweep's configuration

    @property
    def label(self) -> str:
        return " ".join(f"{name}={_text(value)}" for name, value in self.values.items())


@dataclass
class SweepResult:
    """A finished (or resumed) sweep: ``runs`` has one row per run folder, ``rows`` one per configuration
    (the mean and spread of its repeats), both as plain dicts; ``sweep_dir`` holds sweep.md and the plots."""

    sweep_dir: Path
    varied: list[str]
    runs: list[dict[str, Any]]
    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        return "\n".join(_text_table(self.varied, self.rows))

    def _repr_html_(self) -> str:
        """In a notebook: the table, then the overlaid curves."""
        from convlab.notebook import html_table, png_html

        header = _header(self.varied, self.rows)
        table = html_table(header, [_cells(self.varied, row, self.rows) for row in self.rows])
        return table + png_html(self.sweep_dir / CURVES_FILE, "loss and validation top-1 of every run")


# ---------------------------------------------------------------------------------------------------------
# The plan


def parse_vary(text: str) -> Variation:
    """``optimizer=sgd,momentum,adam`` -> Variation("optimizer", ("sgd", "momentum", "adam")).

    Values are read as YAML (``lr=0.1,0.01`` are numbers, ``hidden=[500,150],[300]`` lists: commas inside
    brackets do not split); ``option.NAME=...`` names a model option explicitly."""
    name, sep, values = str(text).partition("=")
    name = name.strip().replace("-", "_")
    if not sep or not name or not values.strip():
        raise ConvlabError(
            f"--vary '{text}' is not of the form NAME=V1,V2,...; e.g. --vary optimizer=sgd,momentum,adam."
        )
    option = name.startswith(OPTION_PREFIX)
    if option:
        name = name[len(OPTION_PREFIX) :]
    parsed = tuple(_yaml_value(part) for part in _split_top_level(values))
    if len(set(map(_text, parsed))) != len(parsed):
        raise ConvlabError(f"--vary {name} names a value twice ({values}); give each value once.")
    return Variation(name, parsed, option)


def _split_top_level(text: str) -> list[str]:
    """``a,[1,2],b`` -> ["a", "[1,2]", "b"]: split on the commas outside brackets and braces."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    parts.append("".join(current).strip())
    if any(part == "" for part in parts):
        raise ConvlabError(f"--vary values '{text}' hold an empty value; separate values by single commas.")
    return parts


def _yaml_value(text: str) -> Any:
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value.strip()):
        return float(value)  # YAML 1.1 reads 1e-3 (no dot) as text; a learning rate is a number
    return value


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return str(value)


def plan_sweep(
    variations: Sequence[Variation | str],
    base: Mapping[str, Any],
    *,
    repeat: int = 1,
    config: str | Path | None = None,
) -> list[Configuration]:
    """Every configuration of the grid (the product of the variations, the first varying slowest) times
    ``repeat`` seeds, each checked as ``train`` would check it, before anything runs."""
    variations = [parse_vary(v) if isinstance(v, str) else v for v in variations]
    if not variations:
        raise ConvlabError("A sweep needs at least one --vary NAME=V1,V2,... to compare.")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ConvlabError(f"--repeat must be a whole number of runs, 1 or more; got {repeat!r}.")
    names = [v.name for v in variations]
    if len(set(names)) != len(names):
        raise ConvlabError(f"--vary names {', '.join(names)}: give each setting once, with all its values.")
    base = {str(k).replace("-", "_"): v for k, v in base.items()}
    given = [name for name in NOT_VARIED if base.get(name) is not None and name != "out"]
    if given:
        raise ConvlabError(
            f"A sweep keeps each configuration in a run folder of its own: leave out {', '.join('--' + g for g in given)}."
        )
    base_config = resolve_config(config, **{k: v for k, v in base.items() if k != "out"})
    variations = [_classify(v, base_config, variations) for v in variations]
    plan = []
    grid = list(itertools.product(*(v.values for v in variations)))
    for point, values in enumerate(grid, start=1):
        chosen = {v.name: value for v, value in zip(variations, values)}
        for r in range(repeat):
            settings = {k: v for k, v in base.items() if k != "out"}
            options = dict(settings.get("options") or {})
            for variation, value in zip(variations, values):
                if variation.option:
                    options[variation.name] = value
                else:
                    settings[variation.name] = value
            if options:
                settings["options"] = options
            if repeat > 1 or "seed" in chosen:
                settings["seed"] = int(chosen.get("seed", base_config.seed)) + r
            folder = _folder_name(point, chosen, r if repeat > 1 else None)
            configuration = Configuration(point, chosen, r, folder, settings)
            try:
                resolve_config(config, **settings)
            except ConvlabError as error:
                raise ConvlabError(f"Configuration {configuration.label}: {error}") from None
            plan.append(configuration)
    return plan


def _classify(variation: Variation, base: TrainConfig, variations: list[Variation]) -> Variation:
    """A TrainConfig field, or a model option of every model the sweep trains; else an error that names both."""
    if variation.option:
        return variation
    if variation.name in FIELDS:
        if variation.name in NOT_VARIED:
            raise ConvlabError(
                f"--vary {variation.name} is not a training setting a sweep can vary: the sweep sets "
                f"{', '.join(NOT_VARIED)} for each configuration itself."
            )
        return variation
    models = next((v.values for v in variations if v.name == "model"), (base.model,))
    options = _model_options(models)
    if variation.name in options:
        return Variation(variation.name, variation.values, option=True)
    accepted = sorted(set(FIELDS) - set(NOT_VARIED)) + sorted(options)
    close = closest_names(variation.name, accepted)
    hint = f"; did you mean {', '.join(close)}?" if close else "."
    raise ConvlabError(
        f"--vary {variation.name}: no training setting or model option of that name{hint} Accepted: a "
        f"setting of `convlab train --help` (lr, optimizer, batch_size, ...) or an option every model of "
        f"the sweep takes ({', '.join(sorted(options)) or 'none'}; `convlab models` lists them)."
    )


def _model_options(models: Iterable[Any]) -> set[str]:
    """The option names every named zoo model takes (a network of your own declares none we can read)."""
    from convlab.models import get_model_info, is_reference

    shared: set[str] | None = None
    for model in models:
        if not isinstance(model, str) or is_reference(model):
            return set()
        try:
            names = set(get_model_info(model).option_table)
        except ConvlabError:
            return set()  # the plan's own check names the unknown model
        shared = names if shared is None else shared & names
    return shared or set()


def _folder_name(point: int, values: Mapping[str, Any], repeat: int | None) -> str:
    """``03-optimizer-adam-lr-0.001`` (``-seed2`` for a repeat): readable in a listing and in TensorBoard."""
    parts = [f"{point:02d}"]
    for name, value in values.items():
        parts += [name, _text(value)]
    if repeat is not None:
        parts.append(f"seed{repeat}")
    name = "-".join(parts)
    return re.sub(r"[^A-Za-z0-9._+=-]+", "_", name)[:120]


# ---------------------------------------------------------------------------------------------------------
# Running it


def sweep(
    vary: Sequence[str | Variation] | Mapping[str, Sequence[Any]] | None = None,
    *,
    repeat: int = 1,
    jobs: int = 1,
    out: str | Path | None = None,
    resume: str | Path | None = None,
    yes: bool = False,
    dry_run: bool = False,
    config: str | Path | None = None,
    **settings: Any,
) -> SweepResult | list[Configuration]:
    """Train every configuration of a grid and compare them: ``convlab sweep`` in Python.

    ``vary``: ``["optimizer=sgd,momentum,adam", "lr=0.1,0.01"]`` or ``{"optimizer": ["sgd", "adam"]}``;
    any training setting, ``model``, or a model option (``pool``, or ``option.pool``). ``settings`` are
    ``train``'s, shared by every configuration. ``repeat`` K trains each configuration with K seeds
    (seed, seed + 1, ...) and reports their mean and spread. ``jobs`` N trains N at a time in separate
    processes with the cores split between them. Past MAX_RUNS_WITHOUT_YES runs, ``yes=True`` is needed;
    ``dry_run=True`` returns the plan without training. ``resume``: a sweep folder to continue.

    Returns a SweepResult: ``.rows`` (one dict per configuration) and ``.table()``; the sweep folder holds
    sweep.md (table and plots), sweep.csv (one row per run), sweep.png and a run folder per configuration.
    >>> convlab.sweep(["optimizer=sgd,momentum,adam"], model="lenet5", data="fashion-mnist", epochs=3)
    """
    if resume is not None:
        if vary or settings or config is not None or out is not None:
            raise ConvlabError("--resume continues a sweep with its saved plan; give only the sweep folder.")
        sweep_dir, saved = Path(resume), _read_plan(Path(resume))
        vary, repeat, config, settings = saved["vary"], saved["repeat"], saved["config"], saved["settings"]
    if isinstance(vary, Mapping):
        vary = [Variation(str(name), tuple(values)) for name, values in vary.items()]
    plan = plan_sweep(list(vary or ()), settings, repeat=repeat, config=config)
    if dry_run:
        return plan
    if len(plan) > MAX_RUNS_WITHOUT_YES and not yes and resume is None:
        raise ConvlabError(
            f"This sweep trains {len(plan)} runs (more than {MAX_RUNS_WITHOUT_YES}); give --yes to start it, "
            "or --dry-run to see the plan."
        )
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConvlabError(f"--jobs must be a whole number of processes, 1 or more; got {jobs!r}.")
    if resume is None:
        if out is None:
            from convlab.training.run_folder import default_run_dir

            out = default_run_dir(resolve_config(config, **settings), prefix="sweep-")
        sweep_dir = Path(out)
        if (sweep_dir / PLAN_FILE).exists():
            raise ConvlabError(
                f"'{sweep_dir}' holds a sweep already; continue it with --resume {sweep_dir} or choose another --out."
            )
        if sweep_dir.exists() and any(sweep_dir.iterdir()):
            raise ConvlabError(f"'{sweep_dir}' is not empty; choose another --out for the sweep.")
        saved = {
            "format": FORMAT,
            "vary": [_vary_text(v) for v in vary],
            "repeat": repeat,
            "config": None if config is None else str(config),
            "settings": settings,
            "runs": {},
        }
        _write_plan(sweep_dir, saved)
    return _run_plan(sweep_dir, plan, saved, jobs)


def _vary_text(variation: str | Variation) -> str:
    if isinstance(variation, str):
        return variation
    prefix = OPTION_PREFIX if variation.option else ""
    return f"{prefix}{variation.name}=" + ",".join(
        json.dumps(v) if isinstance(v, (list, dict)) else _text(v) for v in variation.values
    )


def _read_plan(sweep_dir: Path) -> dict[str, Any]:
    path = sweep_dir / PLAN_FILE
    if not path.is_file():
        raise ConvlabError(f"Cannot resume '{sweep_dir}': it is not a sweep folder (no {PLAN_FILE}).")
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConvlabError(f"Cannot resume '{sweep_dir}': {PLAN_FILE} is not readable ({error}).") from None
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ConvlabError(f"Cannot resume '{sweep_dir}': {PLAN_FILE} was not written by this convlab.")
    return saved


def _write_plan(sweep_dir: Path, saved: dict[str, Any]) -> None:
    document = json.dumps(saved, indent=2, default=str) + "\n"
    atomic_write(sweep_dir / PLAN_FILE, lambda tmp: Path(tmp).write_text(document))


def _run_plan(sweep_dir: Path, plan: list[Configuration], saved: dict[str, Any], jobs: int) -> SweepResult:
    progress = TrainProgress(sweep_dir / LOG_FILE)
    done = saved["runs"]
    todo = [c for c in plan if c.folder not in done]
    progress.note(
        f"sweep of {len(plan)} runs into {sweep_dir}"
        + (f"; {len(plan) - len(todo)} finished before, skipped" if len(todo) < len(plan) else "")
    )
    try:
        for configuration, outcome in _outcomes(sweep_dir, todo, saved["config"], jobs, progress):
            done[configuration.folder] = outcome
            _write_plan(sweep_dir, saved)  # each finished run is kept at once: a resume skips it
            progress.note(f"{configuration.folder}: {_outcome_text(outcome)}")
    except KeyboardInterrupt:
        progress.note(f"sweep interrupted; continue it with: convlab sweep --resume {sweep_dir}")
        progress.close()
        raise
    result = _collect(sweep_dir, plan, done)
    _write_results(result)
    progress.note("\n".join(_text_table(result.varied, result.rows)))
    progress.note(
        f"table and curves: {sweep_dir / TABLE_FILE}; TensorBoard: tensorboard --logdir {sweep_dir}"
    )
    progress.close()
    return result


def _outcomes(sweep_dir: Path, todo: list[Configuration], config, jobs: int, progress: TrainProgress):
    """(configuration, outcome) as each run ends: in this process one after the other, or in ``jobs``
    processes, each with its share of the cores (two runs on two cores each taking both would thrash)."""
    if jobs == 1 or len(todo) <= 1:
        for configuration in todo:
            progress.note(f"training {configuration.folder} ({configuration.label})")
            yield configuration, train_configuration(sweep_dir, configuration, config)
        return
    import multiprocessing

    threads = max(1, (os.cpu_count() or 1) // jobs)
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no forked torch thread pools
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=_quiet) as pool:
        futures = {}
        for configuration in todo:
            settings = {"threads": threads, **configuration.settings}
            job = Configuration(**{**configuration.__dict__, "settings": settings})
            futures[pool.submit(train_configuration, sweep_dir, job, config)] = configuration
        progress.note(f"training {len(todo)} runs, {jobs} at a time with {threads} threads each")
        for future in as_completed(futures):
            yield futures[future], future.result()


def _quiet() -> None:
    """A worker's own output would interleave with its siblings': each run's train.log keeps it instead."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    sys.stdout = open(1, "w", closefd=False)  # the process's own stdout, for its life
    sys.stderr = open(2, "w", closefd=False)


def train_configuration(sweep_dir: Path, configuration: Configuration, config) -> dict[str, Any]:
    """Train one configuration into its run folder (resuming a run an interrupted sweep left) and say how it
    ended: ``{"status": "finished"}``, or ``"diverged"`` with the message when its loss went non-finite."""
    from convlab.training.engine import train

    run_dir = sweep_dir / configuration.folder
    start = time.perf_counter()
    try:
        if (run_dir / "config.yaml").exists():  # an interrupted sweep cut this run: continue it
            pace = (
                {"threads": configuration.settings["threads"]} if "threads" in configuration.settings else {}
            )
            train(resume=str(run_dir), **pace)
        else:
            train(config, **configuration.settings, out=str(run_dir))
    except TrainingDiverged as error:
        return {"status": "diverged", "note": str(error), "wall_seconds": time.perf_counter() - start}
    return {"status": "finished", "wall_seconds": time.perf_counter() - start}


def _outcome_text(outcome: Mapping[str, Any]) -> str:
    if outcome["status"] == "diverged":
        return "diverged (the loss went non-finite); recorded, the sweep goes on"
    return f"finished in {outcome['wall_seconds']:.0f} s"


# ---------------------------------------------------------------------------------------------------------
# The results


def _collect(sweep_dir: Path, plan: list[Configuration], done: Mapping[str, Any]) -> SweepResult:
    varied = list(plan[0].values) if plan else []
    runs = [_run_row(sweep_dir, c, done.get(c.folder)) for c in plan]
    result = SweepResult(sweep_dir, varied, runs)
    by_point: dict[int, list[dict[str, Any]]] = {}
    for configuration, row in zip(plan, runs):
        by_point.setdefault(configuration.point, []).append(row)
    result.rows = [_configuration_row(varied, rows) for rows in by_point.values()]
    return result


def _run_row(
    sweep_dir: Path, configuration: Configuration, outcome: Mapping[str, Any] | None
) -> dict[str, Any]:
    """One run's figures from its run folder: metrics.csv for the curves, its checkpoint for the size."""
    from convlab.report import read_metrics

    run_dir = sweep_dir / configuration.folder
    metrics_csv = run_dir / "metrics.csv"
    history = read_metrics(metrics_csv) if metrics_csv.is_file() else []
    last = history[-1] if history else {}
    val = [row.get("val_top1", math.nan) for row in history]
    row: dict[str, Any] = {
        **configuration.values,
        "seed": configuration.settings.get("seed"),
        "run": configuration.folder,
        "status": (outcome or {}).get("status", "not run"),
        "epochs": len(history),
        "final_val_top1": last.get("val_top1", math.nan),
        "best_val_top1": max((v for v in val if not math.isnan(v)), default=math.nan),
        "final_train_loss": last.get("train_loss", math.nan),
        "final_train_top1": last.get("train_top1", math.nan),
        "gradient_ratio": _gradient_ratio(run_dir),
        "seconds": sum(r.get("seconds", 0.0) for r in history),
        "history": history,
    }
    row.update(_size(run_dir))
    return row


def _gradient_ratio(run_dir: Path) -> float:
    """The first weighted layer's gradient norm over the last's, median over the steps gradients.csv logged
    (NaN when the run logged none)."""
    if not (run_dir / "gradients.csv").is_file():
        return math.nan
    from convlab.report.gradients import read_gradients

    rows = read_gradients(run_dir)
    ratios = []
    for step in sorted({row["step"] for row in rows}):
        at_step = sorted((row["depth"], row["grad_norm"]) for row in rows if row["step"] == step)
        if len(at_step) > 1 and at_step[-1][1] > 0:
            ratios.append(at_step[0][1] / at_step[-1][1])
    return statistics.median(ratios) if ratios else math.nan


def _size(run_dir: Path) -> dict[str, Any]:
    """Parameters and multiply-adds per image at the input the run trained on (convlab.analysis)."""
    checkpoint = run_dir / "last.safetensors"
    if not checkpoint.is_file():  # diverged in its first epoch: nothing saved to measure
        return {"params": None, "macs": None}
    from convlab.analysis import summary
    from convlab.checkpoint import load_checkpoint

    model, record = load_checkpoint(checkpoint)
    totals = summary(model, (record.input.channels, *record.input.size)).totals
    return {"params": totals.params, "macs": totals.macs}


def _mean_spread(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _configuration_row(varied: list[str], runs: list[dict[str, Any]]) -> dict[str, Any]:
    row: dict[str, Any] = {name: runs[0][name] for name in varied}
    statuses = [r["status"] for r in runs]
    row["runs"] = len(runs)
    row["status"] = statuses[0] if len(set(statuses)) == 1 else ", ".join(statuses)
    row["gradient_ratio"] = _mean_spread([r["gradient_ratio"] for r in runs])[0]
    for figure in ("final_val_top1", "best_val_top1", "final_train_top1", "final_train_loss", "seconds"):
        row[figure], row[f"{figure}_std"] = _mean_spread([r[figure] for r in runs])
    row["params"], row["macs"] = runs[0]["params"], runs[0]["macs"]
    return row


def _percent(value: float, spread: float | None = None) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2%}" + (f" +- {spread:.2%}" if spread else "")


def _number(value: float, spread: float | None = None, digits: int = 3) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.{digits}g}" + (f" +- {spread:.2g}" if spread else "")


def _count(value: int | None) -> str:
    from convlab.analysis.format import format_si

    return "-" if value is None else format_si(value)


def _columns(rows: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """The table's figure columns as (header, cell of a row); the gradient column only where runs logged
    gradients (--log-gradients)."""
    columns = [
        ("status", lambda row: row["status"]),
        ("val top-1", lambda row: _percent(row["final_val_top1"], row["final_val_top1_std"])),
        ("best val", lambda row: _percent(row["best_val_top1"], row["best_val_top1_std"])),
        ("train top-1", lambda row: _percent(row["final_train_top1"], row["final_train_top1_std"])),
        ("train loss", lambda row: _number(row["final_train_loss"], row["final_train_loss_std"])),
        ("seconds", lambda row: _number(row["seconds"], None, 3)),
        ("params", lambda row: _count(row["params"])),
        ("MACs", lambda row: _count(row["macs"])),
    ]
    if any(not math.isnan(row["gradient_ratio"]) for row in rows):
        # the first layer's gradient norm over the last's, median over the logged steps: far below 1, the
        # gradient vanishes on its way to the input
        columns.append(("grad first/last", lambda row: _number(row["gradient_ratio"], None, 2)))
    return columns


def _header(varied: list[str], rows: list[dict[str, Any]]) -> list[str]:
    return [*varied, *(name for name, _ in _columns(rows))]


def _cells(varied: list[str], row: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    return [*(_text(row[name]) for name in varied), *(cell(row) for _, cell in _columns(rows))]


def _text_table(varied: list[str], rows: list[dict[str, Any]]) -> list[str]:
    """The table as aligned text, for the terminal and the log (figures are means over repeats)."""
    header = _header(varied, rows)
    body = [_cells(varied, row, rows) for row in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in [header, *body]
    ]


def _write_results(result: SweepResult) -> None:
    import csv
    import io

    sweep_dir, varied = result.sweep_dir, result.varied
    plot_sweep(result.runs, varied, sweep_dir / CURVES_FILE)
    columns = [*varied, "seed", "run", "status", "epochs", "final_val_top1", "best_val_top1"]
    columns += ["final_train_top1", "final_train_loss", "seconds", "params", "macs", "gradient_ratio"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: _csv(v) for k, v in run.items()} for run in result.runs)
    atomic_write(sweep_dir / RUNS_FILE, lambda tmp: Path(tmp).write_text(buffer.getvalue()))
    repeats = max((row["runs"] for row in result.rows), default=1)
    lines = [
        f"# Sweep over {', '.join(varied)}",
        "",
        f"{len(result.runs)} runs; figures are the "
        + ("mean +- standard deviation over each configuration's seeds" if repeats > 1 else "run's own")
        + ". val top-1 is the last epoch's, best val the best epoch's; seconds train and validate.",
        "",
        "| " + " | ".join(_header(varied, result.rows)) + " |",
        "|" + "---|" * len(_header(varied, result.rows)),
    ]
    lines += ["| " + " | ".join(_cells(varied, row, result.rows)) + " |" for row in result.rows]
    lines += ["", f"![Training loss and validation top-1 of every run]({CURVES_FILE})", ""]
    links = ", ".join("[{0}]({0}/report.md)".format(run["run"]) for run in result.runs)
    lines += [f"Run folders: {links}.", ""]
    text = "\n".join(lines)
    atomic_write(sweep_dir / TABLE_FILE, lambda tmp: Path(tmp).write_text(text))


def _csv(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return ""
    return _text(value) if isinstance(value, (list, tuple)) else value


def plot_sweep(runs: list[dict[str, Any]], varied: list[str], out_png: Path) -> Path:
    """Training loss and validation top-1 of every run, against epoch and against seconds, overlaid: one
    colour per configuration, its repeats drawn alike."""
    from matplotlib import colormaps
    from matplotlib.ticker import MaxNLocator

    from convlab.viz.render import new_figure, save_figure

    figure = new_figure(12, 8)
    figure.set_layout_engine("constrained")  # titles and axis labels of the four panels do not overlap
    axes = figure.subplots(2, 2)
    labels = list(dict.fromkeys(" ".join(f"{n}={_text(r[n])}" for n in varied) for r in runs))
    colours = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    drawn: set[str] = set()
    for run in runs:
        history = run["history"]
        if not history:
            continue
        label = " ".join(f"{n}={_text(run[n])}" for n in varied)
        colour = colours(labels.index(label) % colours.N)
        epochs = [r.get("epoch", math.nan) for r in history]
        seconds = list(itertools.accumulate(r.get("seconds", 0.0) for r in history))
        legend = label if label not in drawn else None
        drawn.add(label)
        for row, metric in enumerate(("train_loss", "val_top1")):
            values = [r.get(metric, math.nan) for r in history]
            for column, x in enumerate((epochs, seconds)):
                axes[row][column].plot(x, values, marker="o", color=colour, label=legend, alpha=0.85)
    for row, title in enumerate(("Training loss", "Validation top-1")):
        for column, xlabel in enumerate(("epoch", "seconds")):
            axes[row][column].set_title(f"{title} against {xlabel}")
            axes[row][column].set_xlabel(xlabel)
            axes[row][column].grid(alpha=0.3)
        axes[row][0].xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    if drawn:
        axes[0][0].legend(fontsize="small")
    return save_figure(figure, out_png)
