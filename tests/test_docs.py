"""The documentation states figures and commands the code must keep: the zoo table in docs/models.md, and
the experiments of docs/experiments.md, each a command that plans and that `make experiments` runs."""

import re
from pathlib import Path

from convlab.analysis.zoo import zoo_table

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_the_zoo_table_in_the_docs_matches_the_models():
    rows = re.findall(
        r"^\| `(\w+)` \| \w+ \| \d+ \| (\d+)x(\d+)x(\d+) \| ([\d,]+) \|",
        (DOCS / "models.md").read_text(),
        re.M,
    )
    documented = {
        name: (int(c), int(h), int(w), int(params.replace(",", ""))) for name, c, h, w, params in rows
    }
    measured = {r["name"]: (*r["input_size"], r["params"]) for r in zoo_table()}
    assert documented == measured


def experiment_commands() -> list[list[str]]:
    """The commands of docs/experiments.md's code blocks, one list of arguments each (continuations joined)."""
    import shlex

    text = (DOCS / "experiments.md").read_text()
    commands = []
    for block in re.findall(r"```\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if line.startswith("convlab "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_every_experiment_in_the_docs_is_a_command_that_plans_and_make_experiments_runs_it():
    import shlex

    from convlab.cli import build_parser, main

    made = []
    for line in (DOCS.parent / "Makefile").read_text().replace("\\\n", " ").splitlines():
        if line.strip().startswith("$(CONVLAB) ") and "--out" in line:
            arguments = shlex.split(line.strip())[1:]
            at = arguments.index("--out")
            made.append(arguments[:at] + arguments[at + 2 :])  # the folder make chooses
    commands = experiment_commands()
    assert len(commands) >= 9
    for arguments in commands:
        if arguments[0] == "sweep":
            assert main([*arguments, "--dry-run"]) == 0, arguments  # every setting and --vary checked
        else:
            build_parser().parse_args([a.replace("RUN", "runs/x") for a in arguments])
        if "RUN" not in arguments:
            assert arguments in made, f"make experiments does not run: {arguments}"
