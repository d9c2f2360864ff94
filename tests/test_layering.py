"""convlab's layers point down: a module imports only from layers below its own, and no imports form a cycle.

The imports are read from the source (module level and inside functions alike: a lazy import hides a
cycle, it does not remove it). ``from convlab.pkg import name`` counts as an import of the submodule
``convlab.pkg.name`` when there is one, else of the package ``convlab.pkg``.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SOURCE = Path(__file__).resolve().parents[1] / "src"

# Bottom to top. A unit may import from its own package and from units on lower rows only; units on one
# row are independent of each other. `convlab/__init__.py` is the lazy public API (names, not imports).
LAYERS = [
    ("convlab.errors", "convlab.lazy"),
    # torch-free: setting names, atomic writes, what results show in a notebook, lines in a terminal
    ("convlab.choices", "convlab.files", "convlab.notebook", "convlab.terminal"),
    (
        "convlab.runtime",
        "convlab.threads",
        "convlab.allocator",
        "convlab.speed",
        "convlab.layers",
        "convlab.data",
    ),
    ("convlab.models",),
    ("convlab.record", "convlab.analysis"),
    ("convlab.checkpoint",),
    ("convlab.viz",),
    ("convlab.evaluation",),  # draws its confusion matrix with viz
    ("convlab.report", "convlab.transfer", "convlab.exporting"),
    ("convlab.prediction", "convlab.training"),
    ("convlab.serve",),
    ("convlab.cli",),
    ("convlab.__main__",),  # `python -m convlab`: the command itself, as `torchrun -m convlab` starts it
]
RANK = {unit: rank for rank, row in enumerate(LAYERS) for unit in row}


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted((SOURCE / "convlab").rglob("*.py")):
        parts = list(path.relative_to(SOURCE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        files[".".join(parts)] = path
    return files


MODULES = module_files()


def resolve(name: str) -> str:
    """The convlab module an imported name lives in (the longest module prefix of it)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports_of(module: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(MODULES[module].read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {resolve(name) for name in names if name == "convlab" or name.startswith("convlab.")}
    return found - {module}


GRAPH = {module: imports_of(module) for module in MODULES}


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: a top-level module, or a package with everything below it."""
    return ".".join(module.split(".")[:2])


def test_every_module_belongs_to_a_layer():
    units = {unit_of(module) for module in MODULES} - {"convlab"}
    assert units <= set(RANK), f"place these in LAYERS: {sorted(units - set(RANK))}"


def test_layers_only_import_downwards():
    wrong = []
    for module, targets in GRAPH.items():
        if module == "convlab":
            continue
        for target in targets:
            source_unit, target_unit = unit_of(module), unit_of(target)
            if target_unit == source_unit or target == "convlab" and module != "convlab":
                continue  # inside one package; `from convlab import __version__` reads the version only
            if RANK[target_unit] >= RANK[source_unit]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "imports that point sideways or up:\n" + "\n".join(sorted(wrong))


def test_the_imports_have_no_cycle():
    # Tarjan's strongly connected components: any component of more than one module is a cycle.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in GRAPH[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(GRAPH)))
    for module in GRAPH:
        if module not in index:
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(cycle) for cycle in cycles)


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("convlab.layers", ("convlab.data", "convlab.training", "convlab.serve", "convlab.cli")),
        ("convlab.models", ("convlab.data", "convlab.training", "convlab.serve", "convlab.cli")),
        ("convlab.data", ("convlab.models",)),
        ("convlab.serve", ("convlab.training",)),
    ],
)
def test_the_rules_a_reader_relies_on(module, forbidden):
    reached = set()
    todo = [m for m in GRAPH if unit_of(m) == module]
    while todo:  # everything the package reaches, directly or through others
        current = todo.pop()
        for target in GRAPH[current]:
            if target not in reached:
                reached.add(target)
                todo.append(target)
    assert not {unit_of(m) for m in reached} & set(forbidden)


def test_nothing_imports_the_cli():
    assert not [
        m
        for m, targets in GRAPH.items()
        if unit_of(m) not in ("convlab.cli", "convlab.__main__")
        and any(unit_of(t) == "convlab.cli" for t in targets)
    ]


def test_the_command_line_parser_does_not_load_torch():
    code = (
        "import sys; from convlab.cli import build_parser; build_parser(); print(sorted("
        "m for m in ('torch', 'numpy', 'matplotlib') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
