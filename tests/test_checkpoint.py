"""Checkpoints: safetensors weights written atomically, found in run folders, refused with one sentence."""

import os

import pytest
import torch

import convlab
from convlab.checkpoint import load_checkpoint, read_record, resolve_checkpoint, save_checkpoint
from convlab.errors import ConvlabError
from convlab.files import atomic_write


def test_a_failed_write_leaves_the_previous_file_and_no_temporary_file(tmp_path):
    path = tmp_path / "best.safetensors"
    model = convlab.create_model("mlp", num_classes=2, in_chans=1)
    save_checkpoint(path, model, {"classes": ["a", "b"], "epoch": 1, "metrics": {"val_top1": 0.5}})
    before = path.read_bytes()

    def crash(tmp):
        with open(tmp, "wb") as handle:
            handle.write(b"half a file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, crash)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["best.safetensors"]
    assert read_record(path).epoch == 1


def test_a_run_folder_resolves_to_best_then_last(tmp_path):
    model = convlab.create_model("mlp", num_classes=2, in_chans=1)
    save_checkpoint(tmp_path / "last.safetensors", model)
    assert resolve_checkpoint(tmp_path) == tmp_path / "last.safetensors"
    save_checkpoint(tmp_path / "best.safetensors", model)
    assert resolve_checkpoint(tmp_path) == tmp_path / "best.safetensors"
    assert resolve_checkpoint(tmp_path, prefer="last") == tmp_path / "last.safetensors"


def test_weights_that_do_not_fit_the_recorded_model_are_one_sentence(tmp_path):
    path = save_checkpoint(tmp_path / "m.safetensors", convlab.create_model("mlp", num_classes=2, in_chans=1))
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(path))
    first = next(iter(state))
    state[first] = torch.zeros(3, 3)
    save_file(state, str(path), metadata=metadata)
    with pytest.raises(ConvlabError, match=r"does not fit model 'mlp' as recorded"):
        load_checkpoint(path)


def test_models_without_a_record_of_how_to_rebuild_them_cannot_be_saved(tmp_path):
    with pytest.raises(
        ConvlabError, match=r"This Linear carries no record of how to rebuild it .*convlab.create_model"
    ):
        save_checkpoint(tmp_path / "m.safetensors", torch.nn.Linear(2, 2))
    assert not (tmp_path / "m.safetensors").exists()


def test_weights_are_compared_with_the_record_before_the_network_is_built(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    model = convlab.create_model("resnet20", num_classes=3)
    path = save_checkpoint(tmp_path / "m.safetensors", model, {"classes": ["a", "b", "c"]})
    with safe_open(str(path), framework="pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(path))
    # batch norm's counters may be absent, as load_state_dict allows (state dicts from before torch 0.4.1)
    counters = {key: value for key, value in state.items() if not key.endswith("num_batches_tracked")}
    save_file(counters, str(tmp_path / "no-counters.safetensors"), metadata=metadata)
    loaded, _ = load_checkpoint(tmp_path / "no-counters.safetensors")
    assert torch.equal(loaded.fc.weight, model.fc.weight)
    # any other tensor missing, or one more than the network has, is one sentence naming the first
    save_file(
        {k: v for k, v in state.items() if k != "fc.bias"},
        str(tmp_path / "missing.safetensors"),
        metadata=metadata,
    )
    with pytest.raises(
        ConvlabError,
        match=r"missing.safetensors' does not fit model 'resnet20' as recorded: the file lacks fc.bias\.$",
    ):
        load_checkpoint(tmp_path / "missing.safetensors")
    save_file({**state, "head.extra": torch.zeros(1)}, str(tmp_path / "extra.safetensors"), metadata=metadata)
    with pytest.raises(ConvlabError, match=r"the file holds head.extra, which the recorded network lacks\.$"):
        load_checkpoint(tmp_path / "extra.safetensors")
