"""Your own network through the registry's door: builders from a file or a module, ``register_model`` for
your own builder, the spec that records where the code is, and the errors a user meets on the way."""

from __future__ import annotations

import datetime
import sys
import textwrap

import pytest
import torch
from torch import nn

import convlab
from convlab.checkpoint import load_checkpoint, save_checkpoint
from convlab.errors import ConvlabError
from convlab.models import ModelSpec, UserCode, create_model, get_model_info, spec_for_network
from convlab.models._registry import _REGISTRY
from convlab.models.user import check_channels, check_logits, parse_reference

TINY = '''
from torch import nn


def tinycnn(num_classes, in_chans, width=8):
    """Two convolutions and a linear head."""
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )


def fixed():
    """Takes neither num_classes nor in_chans: ten classes of 1 x 8 x 8 images, always."""
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 10))


def anything(**settings):
    """Hands its keyword arguments on, as torchvision's resnet18(**kwargs) does to ResNet."""
    return nn.Conv2d(settings.get("in_chans", 1), settings["num_classes"], 1)


def not_a_network(num_classes):
    return [num_classes]


NOT_CALLABLE = 3
'''


def tiny_parameters(in_chans: int, num_classes: int, width: int = 8) -> int:
    return (
        (in_chans * width * 9 + width)
        + (width * 2 * width * 9 + 2 * width)
        + (2 * width * num_classes + num_classes)
    )


@pytest.fixture
def tiny_file(tmp_path):
    path = tmp_path / "tiny.py"
    path.write_text(TINY)
    return path


@pytest.fixture
def registry_kept():
    """Names registered by a test are taken out again, so the zoo stays the zoo for the other tests."""
    before = dict(_REGISTRY)
    yield
    _REGISTRY.clear()
    _REGISTRY.update(before)


def test_a_builder_in_a_file_is_called_with_the_classes_and_channels_it_takes(tiny_file):
    model = create_model(f"{tiny_file}:tinycnn", num_classes=5, in_chans=3, width=4)
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
    assert sum(p.numel() for p in model.parameters()) == tiny_parameters(3, 5, width=4)
    spec = model.convlab_spec
    assert (spec.name, spec.num_classes, spec.in_chans, spec.options) == ("tinycnn", 5, 3, {"width": 4})
    assert spec.code.form == "file" and spec.code.function == "tinycnn"
    assert spec.code.file == str(tiny_file.resolve()) and len(spec.code.sha256) == 64


def test_a_builder_gets_only_the_arguments_its_signature_takes(tiny_file):
    fixed = create_model(f"{tiny_file}:fixed", num_classes=10, in_chans=1)
    assert fixed(torch.zeros(1, 1, 8, 8)).shape == (1, 10)
    # **kwargs gets num_classes, not in_chans: torchvision's ResNet, handed both, would refuse in_chans
    assert create_model(f"{tiny_file}:anything", num_classes=7, in_chans=2).weight.shape == (7, 1, 1, 1)


def test_without_classes_the_spec_records_the_builders_own_defaults(tiny_file):
    spec = create_model(f"{tiny_file}:fixed").convlab_spec
    assert (spec.num_classes, spec.in_chans) == (10, 3)  # the last linear's outputs; no convolution: 3


def test_the_same_text_runs_once_and_an_edited_file_runs_again(tiny_file):
    first = create_model(f"{tiny_file}:tinycnn", num_classes=2, in_chans=1)
    again = create_model(f"{tiny_file}:tinycnn", num_classes=2, in_chans=1)
    assert type(first[0]) is type(again[0]) and first.convlab_spec.code == again.convlab_spec.code
    tiny_file.write_text(TINY.replace("width=8", "width=6"))
    edited = create_model(f"{tiny_file}:tinycnn", num_classes=2, in_chans=1)
    assert edited[0].out_channels == 6 and edited.convlab_spec.code.sha256 != first.convlab_spec.code.sha256


@pytest.mark.parametrize(
    ("function", "options", "message"),
    [
        ("tinycnn", {"depth": 3}, "Your network tinycnn does not take option(s) depth; it accepts: width."),
        (
            "tinycn",
            {},
            "has no 'tinycn'; did you mean tinycnn? It defines: anything, fixed, not_a_network, tinycnn.",
        ),
        ("NOT_CALLABLE", {}, "'NOT_CALLABLE' in"),
        (
            "not_a_network",
            {},
            "not_a_network(num_classes=3) returned a list; a builder must return an nn.Module.",
        ),
    ],
)
def test_a_builder_that_does_not_fit_is_one_sentence(tiny_file, function, options, message):
    with pytest.raises(ConvlabError) as caught:
        create_model(f"{tiny_file}:{function}", num_classes=3, in_chans=1, **options)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_required_argument_names_the_flag_that_gives_it(tiny_file):
    with pytest.raises(
        ConvlabError, match=r"needs num_classes; give --num-classes N \(in Python: num_classes=\.\.\.\)"
    ):
        create_model(f"{tiny_file}:tinycnn", in_chans=1)


def test_errors_in_the_users_file_point_at_its_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from torch import nn\n\ndef net(:\n    pass\n")
    with pytest.raises(ConvlabError, match=r"'.*broken.py' is not valid Python \(line 3: "):
        create_model(f"{broken}:net")
    failing = tmp_path / "failing.py"
    failing.write_text("import torch\n\nfrom blocks import Block\n")
    with pytest.raises(
        ConvlabError, match=r"Running '.*failing.py' failed \(failing.py line 3\): ModuleNotFoundError"
    ):
        create_model(f"{failing}:net")
    raising = tmp_path / "raising.py"
    raising.write_text(
        "from torch import nn\n\ndef net(num_classes):\n    return nn.Linear(4, num_classes // 0)\n"
    )
    with pytest.raises(
        ConvlabError, match=r"net\(num_classes=2\) failed \(raising.py line 4\): ZeroDivisionError"
    ):
        create_model(f"{raising}:net", num_classes=2)
    with pytest.raises(ConvlabError, match=r"No file '.*missing.py' for your network"):
        create_model(f"{tmp_path / 'missing.py'}:net")


@pytest.mark.parametrize(
    "text", ["model.py:", ":tinycnn", "my nets:tinycnn", "nets/model:tinycnn", "a.py:1net"]
)
def test_a_malformed_reference_says_which_forms_are_accepted(text):
    with pytest.raises(ConvlabError, match="path/to/file.py:function or package.module:function"):
        parse_reference(text)


def test_an_unknown_zoo_name_mentions_your_own_network():
    with pytest.raises(
        ConvlabError, match=r"Unknown model 'mynet'.*Your own network: path/to/file.py:function"
    ):
        create_model("mynet")


def test_a_module_path_is_imported_from_the_current_folder(tmp_path, monkeypatch):
    (tmp_path / "ownnets_cwd.py").write_text(TINY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.delitem(sys.modules, "ownnets_cwd", raising=False)
    model = create_model("ownnets_cwd:tinycnn", num_classes=4, in_chans=1)
    assert model.convlab_spec.code == UserCode("module", "tinycnn", module="ownnets_cwd")
    assert model.convlab_spec.reference == "ownnets_cwd:tinycnn"
    rebuilt = ModelSpec.from_dict(model.convlab_spec.to_dict()).build()
    assert [p.shape for p in rebuilt.parameters()] == [p.shape for p in model.parameters()]
    with pytest.raises(ConvlabError, match="No module 'no_such_nets' to import"):
        create_model("no_such_nets:tinycnn")


def test_a_class_in_a_script_or_notebook_cannot_be_named():
    with pytest.raises(
        ConvlabError, match=r"defined in a script or notebook.*convlab.train\(model=Net\(\.\.\.\)\)"
    ):
        create_model("__main__:Net")


def test_the_spec_round_trips_through_its_json_and_rebuilds_from_the_copy(tiny_file, tmp_path):
    model = create_model(f"{tiny_file}:tinycnn", num_classes=3, in_chans=1, width=4)
    saved = model.convlab_spec.saved_beside(tmp_path / "run")
    assert (tmp_path / "run" / "model.py").read_text() == TINY
    document = saved.to_dict()
    assert document["code"] == {
        "form": "file",
        "function": "tinycnn",
        "file": "model.py",
        "sha256": model.convlab_spec.code.sha256,
    }
    tiny_file.unlink()
    read = ModelSpec.from_dict(document).located(tmp_path / "run")
    rebuilt = read.build()
    assert rebuilt.convlab_spec is read
    assert sum(p.numel() for p in rebuilt.parameters()) == tiny_parameters(1, 3, width=4)


def test_a_record_without_code_is_a_zoo_model_as_every_record_before_it():
    spec = ModelSpec.from_dict({"name": "lenet5", "num_classes": 10, "in_chans": 1})
    assert spec.code is None and "code" not in spec.to_dict()
    assert sum(p.numel() for p in spec.build().parameters()) == 61_706  # LeNet-5 as built today


def test_no_code_runs_for_a_record_that_does_not_say_it_holds_user_code(tmp_path):
    marker = tmp_path / "ran"
    trap = tmp_path / "trap.py"
    trap.write_text(f"open({str(marker)!r}, 'w').close()\n\ndef net():\n    pass\n")
    zoo_looking = ModelSpec.from_dict({"name": f"{trap}:net", "num_classes": 10, "in_chans": 1})
    with pytest.raises(ConvlabError, match="without saying it is a network of your own"):
        zoo_looking.build()
    with pytest.raises(ConvlabError, match="has form 'pickle', which this convlab cannot rebuild"):
        ModelSpec.from_dict(
            {"name": "net", "num_classes": 10, "in_chans": 1, "code": {"form": "pickle", "function": "net"}}
        )
    assert not marker.exists()


def test_a_missing_copy_says_to_copy_the_whole_run_folder(tiny_file, tmp_path):
    spec = create_model(f"{tiny_file}:tinycnn", num_classes=3, in_chans=1).convlab_spec
    saved = ModelSpec.from_dict(spec.saved_beside(tmp_path / "run").to_dict()).located(tmp_path / "elsewhere")
    with pytest.raises(
        ConvlabError, match="which is missing; a run folder keeps model.py beside its checkpoints"
    ):
        saved.build()


def test_register_model_makes_your_builder_a_zoo_name_with_sensible_defaults(tmp_path, registry_kept):
    source = tmp_path / "registered.py"
    source.write_text(
        textwrap.dedent(
            '''
            import convlab
            from torch import nn


            @convlab.register_model
            def mynet(num_classes=4, in_chans=1, hidden=32):
                """A two-layer perceptron of my own."""
                return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.ReLU(), nn.Linear(hidden, num_classes))
            '''
        )
    )
    create_model(f"{source}:mynet")  # loading the file registers the name
    info = get_model_info("mynet")
    assert (info.family, info.year, info.paper) == ("user", datetime.date.today().year, "")
    assert (info.num_classes, info.input_size, info.options) == (4, (1, 224, 224), ["hidden"])
    assert info.description == "A two-layer perceptron of my own."
    assert any(model.name == "mynet" for model in convlab.list_models())
    model = create_model("mynet", num_classes=6, hidden=16)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 6)
    assert model.convlab_spec.code.form == "file" and model.convlab_spec.code.function == "mynet"
    with pytest.raises(ConvlabError, match="does not take option"):
        create_model("mynet", depth=2)


def test_register_model_replaces_your_own_name_and_refuses_a_zoo_one(registry_kept):
    @convlab.register_model(family="mine", year=2024, paper="my notes", input_size=(1, 28, 28))
    def twice(num_classes: int, in_chans: int) -> nn.Module:
        return nn.Conv2d(in_chans, num_classes, 1)

    @convlab.register_model(family="mine", year=2025)
    def twice(num_classes: int, in_chans: int) -> nn.Module:  # noqa: F811  (a notebook cell run again)
        return nn.Conv2d(in_chans, num_classes, 3)

    assert get_model_info("twice").year == 2025 and create_model("twice", 2, 1).kernel_size == (3, 3)
    with pytest.raises(ConvlabError, match="Model 'lenet5' is registered already"):

        @convlab.register_model
        def lenet5(num_classes, in_chans):
            return nn.Linear(1, 1)


def test_a_network_you_built_records_its_class_and_arguments_when_they_rebuild_it(tmp_path, monkeypatch):
    (tmp_path / "ownnets_class.py").write_text(
        textwrap.dedent(
            """
            from torch import nn


            class Net(nn.Module):
                def __init__(self, num_classes=10, width=8):
                    super().__init__()
                    self.features = nn.Conv2d(1, width, 3)
                    self.head = nn.Linear(width, num_classes)

                def forward(self, x):
                    return self.head(self.features(x).mean((2, 3)))
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from ownnets_class import Net

    spec = spec_for_network(Net(width=4), 10, 1, (1, 8, 8), {"width": 4})
    assert spec.code == UserCode("module", "Net", module="ownnets_class") and spec.options == {"width": 4}
    assert spec.reference == "ownnets_class:Net"
    assert spec.build().features.out_channels == 4
    # Without its arguments the class would rebuild 8 filters: the spec says it cannot rebuild the network.
    unknown = spec_for_network(Net(width=4), 10, 1, (1, 8, 8))
    assert unknown.code.form == "unrecorded"
    with pytest.raises(ConvlabError, match=r"convlab.load\(RUN, model=Net\(\.\.\.\)\)"):
        unknown.build()


def test_a_class_defined_in_a_function_is_unrecorded_and_loads_with_the_same_code(tmp_path):
    class Local(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(x)

    network = Local()
    network.convlab_spec = spec_for_network(network, 3, 1, (1, 2, 2))
    document = network.convlab_spec.to_dict()
    assert document["code"]["form"] == "unrecorded" and "<locals>.Local" in document["code"]["function"]
    assert "convlab cannot rebuild" in document["code"]["note"]
    path = save_checkpoint(tmp_path / "best.safetensors", network)
    with pytest.raises(
        ConvlabError, match=r"load the run in Python with the same code: convlab.load\(RUN, model=Local"
    ):
        load_checkpoint(path)
    loaded, record = convlab.load(path, model=Local())
    assert torch.equal(loaded.head.weight, network.head.weight) and record.model.code.form == "unrecorded"


def test_the_output_and_channels_are_checked_against_the_data(tiny_file):
    five = create_model(f"{tiny_file}:tinycnn", num_classes=5, in_chans=1)
    with pytest.raises(ConvlabError) as caught:
        check_logits(five, "tinycnn", (1, 8, 8), 10, "digits")
    assert str(caught.value) == (
        "Your network tinycnn returns Nx5 outputs, but digits has 10 classes: it must return logits N x 10; "
        "build its last layer with the num_classes it is given (num_classes=10)."
    )
    colour = create_model(f"{tiny_file}:tinycnn", num_classes=10, in_chans=3)
    with pytest.raises(
        ConvlabError, match=r"starts with '0', which takes 3 input channels, but digits images have 1"
    ):
        check_channels(colour, "tinycnn", (1, 8, 8), "digits")
    check_logits(create_model(f"{tiny_file}:fixed"), "fixed", (1, 8, 8), 10, "digits")  # fits: no error
    with pytest.raises(ConvlabError, match=r"cannot run on digits's 1x16x16 images"):
        check_logits(create_model(f"{tiny_file}:fixed"), "fixed", (1, 16, 16), 10, "digits")


def test_the_channel_check_follows_the_forward_pass_not_the_definition_order():
    class HeadFirst(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Conv2d(8, 10, 1)  # defined first, called last
            self.stem = nn.Conv2d(1, 8, 3, padding=1)

        def forward(self, x):
            return self.head(self.stem(x)).mean((2, 3))

    check_channels(HeadFirst(), "HeadFirst", (1, 8, 8), "digits")  # fits: no error
    with pytest.raises(
        ConvlabError, match=r"starts with 'stem', which takes 1 input channels, but photos images have 3"
    ):
        check_channels(HeadFirst(), "HeadFirst", (3, 8, 8), "photos")


def test_a_second_networks_copy_in_the_same_folder_gets_a_name_of_its_own(tiny_file, tmp_path):
    first = create_model(f"{tiny_file}:tinycnn", num_classes=3, in_chans=1)
    save_checkpoint(tmp_path / "run" / "a.safetensors", first)
    other = tmp_path / "other.py"
    other.write_text(TINY.replace("width=8", "width=5"))
    second = create_model(f"{other}:tinycnn", num_classes=3, in_chans=1)
    save_checkpoint(tmp_path / "run" / "b.safetensors", second)
    code = second.convlab_spec.code
    assert sorted(p.name for p in (tmp_path / "run").glob("*.py")) == [
        "model-" + code.sha256[:8] + ".py",
        "model.py",
    ]
    rebuilt_first, rebuilt_second = (load_checkpoint(tmp_path / "run" / f"{n}.safetensors")[0] for n in "ab")
    assert (rebuilt_first[0].out_channels, rebuilt_second[0].out_channels) == (8, 5)
    assert torch.equal(rebuilt_second[0].weight, second[0].weight)


def test_an_installed_librarys_builder_is_a_module_reference():
    with torch.device("meta"):
        model = create_model("torchvision.models:resnet18", num_classes=10, in_chans=3)
    # torchvision's ResNet-18: 11,689,512 parameters with 1000 classes; 10 classes take 990 x 513 fewer
    assert sum(p.numel() for p in model.parameters()) == 11_689_512 - 990 * 513
    assert model.convlab_spec.code == UserCode("module", "resnet18", module="torchvision.models")


SCALED = """
import torch
from torch import nn

SCALE = torch.tensor(2.0)  # made once, when the file runs


class Scaled(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.fc = nn.Linear(4, num_classes)

    def forward(self, x):
        return self.fc(x.flatten(1)) * SCALE
"""


def test_a_files_top_level_runs_on_a_real_device_even_when_a_summary_loads_it_first(tmp_path):
    path = tmp_path / "scaled.py"
    path.write_text(SCALED)
    assert convlab.summary(f"{path}:Scaled", (1, 2, 2), num_classes=3).totals.params == 4 * 3 + 3
    model = create_model(f"{path}:Scaled", num_classes=3)
    x = torch.ones(1, 1, 2, 2)
    assert torch.equal(model(x), model.fc(x.flatten(1)) * 2)  # SCALE has its value: it was not made on meta


def test_a_network_meta_cannot_run_is_checked_on_its_own_device():
    class ReadsAValue(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.head = nn.Linear(4, num_classes)

        def forward(self, x):
            y = self.conv(x).mean((2, 3))
            return self.head(y / 2 if float(y.mean()) > 100 else y)

    check_channels(ReadsAValue(10), "ReadsAValue", (1, 8, 8), "digits")
    check_logits(ReadsAValue(10), "ReadsAValue", (1, 8, 8), 10, "digits")
    with pytest.raises(ConvlabError, match="returns Nx4 outputs, but digits has 10 classes"):
        check_logits(ReadsAValue(4), "ReadsAValue", (1, 8, 8), 10, "digits")
    with pytest.raises(
        ConvlabError, match="starts with 'conv', which takes 1 input channels, but digits images have 3"
    ):
        check_channels(ReadsAValue(10), "ReadsAValue", (3, 8, 8), "digits")
