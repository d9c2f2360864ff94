"""The configuration loader takes files nobody checked: whatever a YAML or JSON file holds, load_config_file and
resolve_config give a TrainConfig or one ConvlabError sentence, never another exception, never a hang, and
never run what a YAML tag names. What they accept, config.yaml saves and loads back unchanged.

Hypothesis draws the documents (bounded and derandomised: the same examples on every run); inputs that once
broke the loader are kept in tests/fixtures/hostile/ and read by the last test.
"""

import json
import math
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convlab.errors import ConvlabError
from convlab.training import TrainConfig, resolve_config
from convlab.training.config import FIELDS, load_config_file, save_config

HOSTILE = Path(__file__).resolve().parents[1] / "fixtures" / "hostile"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# What YAML and JSON can hold: scalars (huge, negative, NaN and infinite numbers included) in nested lists and
# mappings.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["1e-3", "28x32", "cuda:0", "auto", "adam", "cosine", "flip,crop", "", "nan", "-1"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
# Keys: mostly real settings (so that the checks of each are reached), spelled with dashes at times, or not.
keys = st.one_of(
    st.sampled_from(FIELDS),
    st.sampled_from(FIELDS).map(lambda name: name.replace("_", "-")),
    st.text(max_size=12),
)
documents = st.dictionaries(keys, values, max_size=8)


def loads_or_refuses(path: Path) -> TrainConfig | None:
    """The loader's contract for one file: a TrainConfig, or a ConvlabError (then None)."""
    try:
        load_config_file(path)
        config = resolve_config(path)
    except ConvlabError as error:
        assert str(error).strip()
        return None
    assert isinstance(config, TrainConfig)
    return config


def saves_and_loads_back(config: TrainConfig, folder: Path) -> None:
    """An accepted configuration is a run folder's config.yaml that resolves to itself."""
    save_config(config, folder / "config.yaml")
    again = resolve_config(folder / "config.yaml")
    assert again.to_dict() == config.to_dict()
    for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "clip_value", "clip_norm", "val_split"):
        value = getattr(config, name)
        assert value is None or math.isfinite(value), name


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(text=st.text(max_size=200))
def test_any_text_is_a_configuration_or_one_sentence(folder, text):
    path = folder / "any.yaml"
    path.write_text(text)
    config = loads_or_refuses(path)
    if config is not None:
        saves_and_loads_back(config, folder)


@FUZZ
@given(document=documents, as_json=st.booleans())
def test_any_mapping_of_settings_is_a_configuration_or_one_sentence(folder, document, as_json):
    path = folder / ("doc.json" if as_json else "doc.yaml")
    # JSON as Python writes it (NaN and Infinity included); YAML as PyYAML writes it (.nan, .inf)
    path.write_text(json.dumps(document) if as_json else yaml.safe_dump(document))
    config = loads_or_refuses(path)
    if config is not None:
        saves_and_loads_back(config, folder)
    try:  # the Python API takes the same mapping
        resolve_config(document)
    except ConvlabError:
        pass


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELDS), values, min_size=1, max_size=3))
def test_a_valid_configuration_with_wrong_values_is_still_refused_in_one_sentence(folder, changes):
    document = {**TrainConfig(model="mlp", epochs=3, lr=0.01).to_dict(), **changes}
    path = folder / "mutated.yaml"
    path.write_text(yaml.safe_dump(document))
    config = loads_or_refuses(path)
    if config is not None:
        saves_and_loads_back(config, folder)


# Every setting gets each of these values (as YAML writes them) in turn, in a file and through the Python API.
WRONG_VALUES = [
    "true",
    "[]",
    "[[1, 2], {a: null}]",
    "{nested: {deeper: [1.5, x]}}",
    ".nan",
    "-.inf",
    "-1180591620717411303424",
    "1180591620717411303424",
    "0x" + "f" * 5000,  # an integer Python reads, but refuses to print
    "''",
    "'\u00b2'",  # a digit to str.isdigit, not to int()
    "null",
    "!!binary aGVsbG8=",  # bytes
    "2001-12-14",  # a datetime.date
]


def test_every_setting_with_every_wrong_value_is_a_configuration_or_one_sentence(folder):
    for name in FIELDS:
        for value in WRONG_VALUES:
            path = folder / "wrong.yaml"
            path.write_text(f"model: mlp\n{name}: {value}\n")
            config = loads_or_refuses(path)
            if config is not None:
                saves_and_loads_back(config, folder)
            try:
                resolve_config({"model": "mlp"}, **{name: yaml.safe_load(f"v: {value}")["v"]})
            except ConvlabError:
                pass


@pytest.mark.parametrize(
    "text",
    [
        "!!python/object/apply:os.system ['touch {marker}']",
        "epochs: !!python/object/apply:os.system ['touch {marker}']",
        "model: !!python/name:os.system\nepochs: 2",
        "options: !!python/object/new:subprocess.Popen [['touch', '{marker}']]",
        "epochs: !custom_tag 3",
    ],
)
def test_a_yaml_tag_that_names_code_is_refused_and_never_run(tmp_path, text):
    marker = tmp_path / "ran"
    path = tmp_path / "tagged.yaml"
    path.write_text(text.format(marker=marker))
    with pytest.raises(ConvlabError, match="is not valid YAML"):
        resolve_config(path)
    assert not marker.exists()


# Each file in tests/fixtures/hostile/ and what it did to the loader before it was refused.
BROKE = {
    "alias-bomb.yaml": "nine nested aliases, 10^9 values: copying the configuration never ended",
    "alias-of-itself.yaml": "an alias of its own anchor: RecursionError copying the configuration",
    "augment-not-a-list.yaml": "TypeError: 'bool' object is not iterable",
    "binary.yaml": "UnicodeDecodeError",
    "deep-nesting.yaml": "RecursionError in PyYAML",
    "infinite-image-size.yaml": "OverflowError: cannot convert float infinity to integer",
    "integer-of-5000-digits.yaml": "ValueError: Exceeds the limit (4300 digits) for integer string conversion",
    "nan-in-json.json": "accepted: weight decay NaN, clip norm infinity",
    "nan-learning-rate.yaml": "accepted: a learning rate of NaN",
    "options-not-a-mapping.yaml": "TypeError: 'list' object is not a mapping",
    "recipe-unprintable-integer.yaml": "ValueError: an integer too long to print, in the error message",
    "threads-superscript-digit.yaml": "ValueError: invalid literal for int() with base 10: '\u00b2'",
    "unhashable-optimizer.yaml": "TypeError: unhashable type: 'list'",
}


def test_every_hostile_file_says_what_it_broke():
    assert sorted(path.name for path in HOSTILE.iterdir()) == sorted(BROKE)


@pytest.mark.parametrize("name", sorted(BROKE))
def test_the_inputs_that_once_broke_the_loader_are_refused_in_one_sentence(name):
    with pytest.raises(ConvlabError) as refused:
        resolve_config(HOSTILE / name)
    assert str(refused.value).endswith(".")
