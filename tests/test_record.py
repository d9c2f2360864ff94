"""The typed checkpoint record: one reader and writer of the JSON every checkpoint and exported file carries."""

import json
import shutil
from pathlib import Path

import pytest
import torch

import convlab
from convlab.checkpoint import load_checkpoint, read_record, save_checkpoint
from convlab.errors import ConvlabError
from convlab.models import ModelSpec
from convlab.record import FORMAT, DataSpec, InputSpec, RunRecord, record_for
from tests.helpers import count_parameters

# A run folder written by convlab 0.1.0 before the record was typed (commit 4fc65d0):
# `convlab train --model mlp --data digits --epochs 3 --optimizer adam --lr 0.01 --option hidden=[32]`.
LEGACY_RUN = Path(__file__).parent / "fixtures" / "legacy-run"
LEGACY_TEST_TOP1 = 0.8997  # its train.log: "test top-1 89.97% top-5 99.16% (best weights)"


def _record() -> RunRecord:
    return RunRecord(
        model=ModelSpec("lenet5", num_classes=3, in_chans=1, input_size=(1, 32, 32), options={"pool": "max"}),
        classes=["cat", "dog", "owl"],
        input=InputSpec(channels=1, size=(32, 32), mean=(0.5,), std=(0.25,)),
        data=DataSpec(name="toy", source="made here", val_split=0.1, seed=0),
        epoch=2,
        metrics={"val_top1": 0.5},
        config={"model": "lenet5", "limit": 100},
    )


def test_a_record_survives_json_unchanged():
    record = _record()
    again = RunRecord.from_json(record.to_json())
    assert again == record
    document = json.loads(record.to_json())
    assert document["format"] == FORMAT and document["input"]["size"] == [32, 32]
    assert document["model"]["options"] == {"pool": "max"}


def test_keys_a_newer_convlab_wrote_are_kept_and_an_unknown_format_is_refused():
    document = {**_record().to_dict(), "future": {"x": 1}}
    assert RunRecord.from_dict(document).to_dict()["future"] == {"x": 1}
    with pytest.raises(ConvlabError, match="format 'convlab-checkpoint/9'.*reads convlab-checkpoint/1"):
        RunRecord.from_dict({**document, "format": "convlab-checkpoint/9"})
    with pytest.raises(ConvlabError, match="The record has no 'model.num_classes'"):
        RunRecord.from_dict({"model": {"name": "mlp", "in_chans": 1}})
    with pytest.raises(ConvlabError, match="not valid JSON"):
        RunRecord.from_json("{not json")


def test_the_model_spec_builds_the_recorded_architecture():
    spec = _record().model
    model = spec.build()
    assert ModelSpec.of(model) == spec
    assert count_parameters(model) == count_parameters(
        convlab.create_model("lenet5", num_classes=3, in_chans=1, pool="max")
    )


def test_save_and_load_round_trip_weights_and_record(tmp_path):
    model = convlab.create_model("lenet5", num_classes=3, in_chans=1, pool="max")
    path = save_checkpoint(tmp_path / "run" / "best.safetensors", model, _record())
    loaded, record = load_checkpoint(tmp_path / "run")
    assert record.classes == ["cat", "dog", "owl"] and record.input.mean == (0.5,)
    assert record.trained and record.data_name == "toy"
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)
    assert read_record(path) == record
    # the spec written is always the model's own, whatever the record passed in said
    other = record_for(
        model, {"model": {"name": "mlp", "num_classes": 1, "in_chans": 1}, "classes": list("abc")}
    )
    assert other.model == ModelSpec.of(model)


def test_an_untrained_checkpoint_records_no_training(tmp_path):
    model = convlab.create_model("mlp", num_classes=2, in_chans=1)
    _, record = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model))
    assert not record.trained and record.input is None
    with pytest.raises(ConvlabError, match="records no input preprocessing"):
        record.require_input()


def test_a_run_folder_written_before_the_typed_record_still_loads_and_evaluates(tmp_path):
    run = tmp_path / "legacy-run"
    shutil.copytree(LEGACY_RUN, run)
    record = read_record(run)
    assert record.model.name == "mlp" and record.model.options == {"hidden": [32], "input_size": 8}
    assert record.input.size == (8, 8) and record.input.resize == "squash"  # older records name no rule
    assert record.data == DataSpec(name="digits", source=record.data.source, val_split=0.1, seed=0)
    result = convlab.evaluate(run, split="test")
    assert result.top1 == pytest.approx(LEGACY_TEST_TOP1, abs=5e-5)
    assert (run / "eval-test.json").is_file()
