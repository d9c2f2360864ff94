"""Fuzzing the record reader (issue 16): whatever JSON a checkpoint, ONNX or TorchScript file carries, and whatever
header a safetensors file has, the readers give a valid record or one ConvlabError, never another exception.

The inputs that once broke them are kept in tests/fixtures/hostile-records/ and read on every run: ``*.json``
records (refused by RunRecord.from_json) and ``*.safetensors`` files (refused by load_checkpoint)."""

from __future__ import annotations

import copy
import json
import math
import struct
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file

import convlab
from convlab.checkpoint import load_checkpoint, read_record, save_checkpoint
from convlab.errors import ConvlabError
from convlab.models import list_models
from convlab.record import RunRecord

HOSTILE = Path(__file__).parent / "fixtures" / "hostile-records"
FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

VALID = {
    "format": "convlab-checkpoint/1",
    "convlab_version": "0.1.0",
    "model": {
        "name": "mlp",
        "num_classes": 3,
        "in_chans": 1,
        "input_size": [1, 8, 8],
        "init": "default",
        "options": {"hidden": [4], "input_size": 8},
    },
    "classes": ["a", "b", "c"],
    "input": {"channels": 1, "size": [8, 8], "mean": [0.5], "std": [0.25], "resize": "squash"},
    "data": {"name": "digits", "source": "here", "val_split": 0.1, "seed": 0, "fold": 1, "folds": 5},
    "epoch": 2,
    "metrics": {"val_top1": 0.5},
    "config": {"model": "mlp", "lr": 0.1},
}

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(2**70), 2**70),
    st.floats(),  # NaN and the infinities included: Python's json writes and reads them
    st.text(max_size=12),
    st.sampled_from([0, -1, 2**31, 2**64, 10**8, "", "x" * 5000, 1e308, -0.0]),
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


def paths(document, prefix=()):
    """Every place in a JSON document: key paths into objects and index paths into arrays."""
    yield prefix
    if isinstance(document, dict):
        for key, value in document.items():
            yield from paths(value, (*prefix, key))
    elif isinstance(document, list):
        for index, value in enumerate(document):
            yield from paths(value, (*prefix, index))


PLACES = [place for place in paths(VALID) if place]


@st.composite
def mutated_records(draw) -> dict:
    """The valid record with one to three places replaced by any JSON value, or removed."""
    document = copy.deepcopy(VALID)
    for place in draw(st.lists(st.sampled_from(PLACES), min_size=1, max_size=3)):
        parent = document
        try:
            for step in place[:-1]:
                parent = parent[step]
            if draw(st.integers(0, 5)) == 0 and isinstance(parent, dict):
                parent.pop(place[-1], None)
            else:
                parent[place[-1]] = draw(json_values)
        except (KeyError, IndexError, TypeError):  # an earlier change removed or replaced the way there
            pass
    return document


def check_from_json(text: str | bytes) -> RunRecord | None:
    """RunRecord.from_json(text): a record that survives its own JSON, or None for one ConvlabError."""
    try:
        record = RunRecord.from_json(text, where="The record of 'fuzzed.safetensors'")
    except ConvlabError as error:
        assert "\n" not in str(error) and "fuzzed.safetensors" in str(error)
        return None
    assert RunRecord.from_json(record.to_json()).to_json() == record.to_json()  # as JSON: NaN is not NaN
    if record.input is not None and record.input.std is not None:
        assert all(math.isfinite(s) and s > 0 for s in record.input.std)
    return record


@FUZZ
@given(mutated_records())
def test_a_mutated_record_is_a_valid_record_or_one_convlab_error(document):
    check_from_json(json.dumps(document))


@FUZZ
@given(json_values)
def test_any_json_value_is_a_valid_record_or_one_convlab_error(value):
    check_from_json(json.dumps(value))


@FUZZ
@given(
    st.one_of(
        st.text(max_size=64),
        st.binary(max_size=64),
        st.integers(1, 200_000).map(lambda depth: "[" * depth + "]" * depth),
        st.integers(1, 200_000).map(lambda depth: '{"model": ' * depth),
        st.integers(4_000, 20_000).map(lambda digits: '{"epoch": ' + "9" * digits + "}"),
    )
)
def test_any_text_is_a_valid_record_or_one_convlab_error(text):
    check_from_json(text)


def safetensors_bytes(header: object, data: bytes = b"", declared_length: int | None = None) -> bytes:
    """A safetensors file: the header's length (8 bytes, little-endian), the header as JSON, then ``data``."""
    text = json.dumps(header).encode() if not isinstance(header, bytes) else header
    length = len(text) if declared_length is None else declared_length
    return struct.pack("<Q", length) + text + data


@st.composite
def safetensors_files(draw) -> bytes:
    """Files that are or resemble a convlab checkpoint: random metadata, tensor entries and lengths."""
    metadata = draw(
        st.one_of(
            st.builds(lambda d: {"convlab": json.dumps(d)}, mutated_records()),
            st.dictionaries(st.sampled_from(["convlab", "format", "other"]), json_values, max_size=3),
            json_values,
        )
    )
    entry = st.fixed_dictionaries(
        {
            "dtype": st.sampled_from(["F32", "F16", "U8", "I64", "BOOL", "X9"]) | json_values,
            "shape": st.lists(st.integers(0, 2**40), max_size=3) | json_values,
            "data_offsets": st.lists(st.integers(0, 64), min_size=2, max_size=2) | json_values,
        }
    )
    tensors = draw(st.dictionaries(st.text(min_size=1, max_size=8), entry, max_size=3))
    header = {"__metadata__": metadata, **tensors} if draw(st.booleans()) else draw(json_values)
    data = draw(st.binary(max_size=64))
    declared = draw(st.one_of(st.none(), st.integers(0, 2**64 - 1)))
    return safetensors_bytes(header, data, declared)


@FUZZ
@given(safetensors_files())
def test_read_record_of_any_safetensors_header_is_a_record_or_one_convlab_error(tmp_path, data):
    path = tmp_path / "fuzzed.safetensors"
    path.write_bytes(data)
    try:
        read_record(path)
    except ConvlabError as error:
        assert "\n" not in str(error)


@pytest.fixture(scope="module")
def mlp_checkpoint(tmp_path_factory) -> Path:
    model = convlab.create_model("mlp", num_classes=3, in_chans=1, hidden=[4], input_size=8)
    record = {key: VALID[key] for key in ("classes", "input", "data", "epoch", "metrics")}
    return save_checkpoint(tmp_path_factory.mktemp("mlp") / "best.safetensors", model, record)


ZOO = [info.name for info in list_models() if info.family != "user"]
option_values = st.one_of(
    scalars, st.lists(st.integers(-2, 2**20), max_size=3), st.sampled_from([10**6, 10**12, [10**6], 0.5])
)


@settings(FUZZ, max_examples=40)
@given(
    name=st.sampled_from(ZOO),
    num_classes=st.one_of(st.just(3), st.integers(0, 100_000)),
    in_chans=st.integers(1, 4),
    options=st.dictionaries(
        st.sampled_from(["hidden", "input_size", "depth", "width", "image_size", "growth_rate", "dropout"]),
        option_values,
        max_size=2,
    ),
)
def test_load_checkpoint_with_a_mutated_model_loads_or_is_one_convlab_error(
    mlp_checkpoint, tmp_path, name, num_classes, in_chans, options
):
    document = {
        **VALID,
        "model": {**VALID["model"], "name": name, "num_classes": num_classes, "in_chans": in_chans},
    }
    document["model"]["options"] = options
    document.pop("classes")
    path = tmp_path / "mutated.safetensors"
    save_file(load_file(str(mlp_checkpoint)), str(path), metadata={"convlab": json.dumps(document)})
    try:
        model, _ = load_checkpoint(path)
    except ConvlabError as error:
        assert "\n" not in str(error) and str(path) in str(error)
    else:
        assert model(torch.zeros(1, 1, 8, 8)).shape == (1, num_classes)


# Each file in tests/fixtures/hostile-records/ and what it did before issue 16 (commit e4f215c). The .json files
# were found by fuzzing RunRecord.from_json with the strategies above; the .safetensors files are records within
# the limits that their weights contradict.
BROKE = {
    "channels-as-a-word.json": "ValueError: invalid literal for int() with base 10: 'Trouser'",
    "class-names-for-other-outputs.json": "accepted: 2 names for 3 outputs, an IndexError at the third class",
    "classes-as-a-number.json": "TypeError: 'int' object is not iterable",
    "epoch-of-5000-digits.json": "ValueError: Exceeds the limit (4300 digits) for integer string conversion",
    "input-as-list.json": "AttributeError: 'list' object has no attribute 'get'",
    "issue-16-classes-1e8.json": "accepted: LeNet-5's head for it asked for 33,600,000,000 bytes",
    "issue-16-input-60000x60000.json": "accepted: each request resized its image to 14,400,000,000 bytes",
    "mean-as-text.json": "ValueError: could not convert string to float: 's'",
    "metrics-as-list.json": "TypeError: cannot convert dictionary update sequence element #0 to a sequence",
    "nan-std.json": "accepted: every prediction made from NaN pixels",
    "negative-std.json": "accepted: every image normalised upside down",
    "nested-1500-deep.json": "RecursionError: maximum recursion depth exceeded while decoding a JSON array",
    "num_classes-as-list.json": "TypeError: int() argument must be ... a real number, not 'list'",
    "options-as-list.json": "ValueError: dictionary update sequence element #0 has length 3; 2 is required",
    "size-null.json": "TypeError: 'NoneType' object is not iterable",
    "std-as-list-of-lists.json": "TypeError: float() argument must be a string or a real number, not 'list'",
    "classes-100000-beside-weights-for-3.safetensors": "a 100,000-class head built before the weights refused it",
    "hidden-as-text.safetensors": "refused by the builder in a sentence that named no file",
    "input-4096-that-mlp-cannot-read.safetensors": "loaded: each request then resized to 4096 x 4096 and failed",
    "vit-depth-1e6-beside-4-tensors.safetensors": "a ViT of 10^6 blocks built for real: memory ran out",
}


def test_every_hostile_record_says_what_it_broke():
    assert sorted(path.name for path in HOSTILE.iterdir()) == sorted(BROKE)


@pytest.mark.parametrize("name", sorted(name for name in BROKE if name.endswith(".json")))
def test_records_that_once_broke_the_reader_are_refused(name):
    assert check_from_json((HOSTILE / name).read_text()) is None


@pytest.mark.parametrize("name", sorted(name for name in BROKE if name.endswith(".safetensors")))
def test_checkpoints_that_once_broke_the_loader_are_refused(name):
    with pytest.raises(ConvlabError) as error:
        load_checkpoint(HOSTILE / name)
    assert "\n" not in str(error.value) and name in str(error.value)
