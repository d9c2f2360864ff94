"""Your own network: a builder from a file (``path/to/model.py:function``) or an importable module
(``package.module:function``), called like a zoo builder, and ``UserCode``, the record of where it came from.

A builder is a function (or an ``nn.Module`` class) that returns the network; it is called as
``function(num_classes=..., in_chans=..., **options)``, each of the two passed only when its signature
names it (``num_classes`` also through ``**kwargs``); a builder that fixes its own classes or channels is
checked against the data by training instead.

Loading a file or module runs its code. convlab does that only for a reference the user gave, or for a
record whose model says it is a user's network (``UserCode``), never for a zoo model's record: a run
that recorded a file is as trusted as the file itself, as with ``torch.load`` of a pickled network.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import os
import re
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from convlab.errors import ConvlabError, closest_names
from convlab.files import atomic_write
from convlab.runtime import model_device

REFERENCE_FORMS = "path/to/file.py:function or package.module:function"
# How a record says where a user's network comes from; anything else is refused (no code runs).
CODE_FORMS = ("file", "module", "unrecorded")
# The copy of a user's file beside a checkpoint: one fixed name, so a reader of a run folder knows it.
COPY_NAME = "model.py"
BUILD_ARGUMENTS = ("num_classes", "in_chans")

_DOTTED_NAME = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")  # a module path, or a name inside a module


class Reference(NamedTuple):
    """``path/to/model.py:tinycnn`` -> ("file", "path/to/model.py", "tinycnn")."""

    kind: str  # "file" or "module"
    target: str  # the file's path, or the module's dotted name
    function: str  # the builder's name in it (dotted for a nested attribute)

    def __str__(self) -> str:
        return f"{self.target}:{self.function}"


def is_reference(text: Any) -> bool:
    """Whether ``text`` names a user's builder rather than a zoo model (zoo names have no colon)."""
    return isinstance(text, str) and ":" in text


def parse_reference(text: str) -> Reference:
    """``file.py:function`` or ``package.module:function``; anything else is one clear error."""
    target, _, function = str(text).rpartition(":")  # rpartition: a Windows path keeps its drive's colon
    target, function = target.strip(), function.strip()
    if target and _DOTTED_NAME.fullmatch(function):
        if target.endswith(".py"):
            return Reference("file", target, function)
        if _DOTTED_NAME.fullmatch(target):
            return Reference("module", target, function)
    raise ConvlabError(
        f"Model '{text}' is not a zoo name or a reference to your own network ({REFERENCE_FORMS})."
    )


# ---------------------------------------------------------------------------------------------------------
# Loading a builder


class _LoadedFile(NamedTuple):
    path: Path  # where it was read, resolved
    text: str  # exactly the source that ran: what a run folder's copy holds
    sha256: str
    module: types.ModuleType


# sha256 of a file's text -> the file loaded with that text: each text runs once per process, so its
# classes stay one class (isinstance holds) and a @register_model in it does not run twice.
_FILES: dict[str, _LoadedFile] = {}


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def load_file(path: str | Path) -> _LoadedFile:
    """Run a user's Python file as a module of its own (once per text) and keep the text that ran."""
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConvlabError(f"No file '{path}' for your network; give {REFERENCE_FORMS}.") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConvlabError(f"Cannot read your network's file '{path}' ({error}).") from None
    sha = _sha256(text)
    if sha in _FILES:
        return _FILES[sha]
    stem = re.sub(r"\W", "_", path.stem)
    name = f"convlab_user_{stem}_{sha[:12]}"
    module = types.ModuleType(name)
    module.__file__ = str(path.resolve())
    sys.modules[name] = module  # dataclasses and typing look a class's module up by name while it is defined
    try:
        with _real_device():
            exec(compile(text, str(path), "exec"), module.__dict__)
    except SyntaxError as error:
        del sys.modules[name]
        raise ConvlabError(f"'{path}' is not valid Python (line {error.lineno}: {error.msg}).") from None
    except Exception as error:
        del sys.modules[name]
        raise ConvlabError(f"Running '{path}' failed{_where(error, path)}: {_first_line(error)}") from None
    loaded = _LoadedFile(path.resolve(), text, sha, module)
    _FILES[sha] = loaded
    return loaded


def _real_device():
    """A module's top level runs once per process and its tensors are kept: never on the meta device that
    the inspector builds networks on (a constant made there would have no values in a later real run)."""
    if torch.get_default_device().type == "meta":
        return torch.device("cpu")
    return contextlib.nullcontext()


def import_module(name: str) -> types.ModuleType:
    """Import a user's module by its dotted name; the current folder is searched first, as ``python -m``
    and uvicorn's ``module:app`` do, so ``--model mynets:tiny`` finds ``./mynets.py``."""
    here = os.getcwd()
    if here not in sys.path and "" not in sys.path:
        sys.path.insert(0, here)
    try:
        with _real_device():
            return importlib.import_module(name)
    except ModuleNotFoundError as error:
        if error.name is not None and (name == error.name or name.startswith(f"{error.name}.")):
            file = f"{name.rsplit('.', 1)[-1]}.py:FUNCTION"
            raise ConvlabError(
                f"No module '{name}' to import (looked in the current folder and the installed packages); "
                f"run from the folder that holds it, add it to PYTHONPATH, or give its file: {file}."
            ) from None
        raise ConvlabError(f"Importing '{name}' failed: {_first_line(error)}") from None
    except Exception as error:
        raise ConvlabError(f"Importing '{name}' failed{_where(error)}: {_first_line(error)}") from None


def find_builder(module: types.ModuleType, function: str, where: str) -> Callable[..., Any]:
    """``function`` (dotted for nested attributes) in ``module``, or one error naming what it does define."""
    found: Any = module
    for part in function.split("."):
        found = getattr(found, part, None)
        if found is None:
            defined = _builders_in(module)
            close = closest_names(function, defined)
            hint = f"; did you mean {', '.join(close)}?" if close else "."
            listing = ", ".join(defined) or "no functions or classes"
            raise ConvlabError(f"{where} has no '{function}'{hint} It defines: {listing}.")
    if not callable(found):
        raise ConvlabError(
            f"'{function}' in {where} is a {type(found).__name__}, not a function or class that builds a network."
        )
    return found


def _builders_in(module: types.ModuleType) -> list[str]:
    """The functions and classes a module defines itself (not the ones it imports)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == module.__name__
        and not name.startswith("_")
    )


def load_builder(reference: Reference) -> tuple[Callable[..., Any], UserCode]:
    """The builder a reference names, and the record of where it is."""
    if reference.kind == "file":
        loaded = load_file(reference.target)
        builder = find_builder(loaded.module, reference.function, f"'{reference.target}'")
        return builder, UserCode("file", reference.function, file=str(loaded.path), sha256=loaded.sha256)
    if reference.target == "__main__":
        raise ConvlabError(
            f"'{reference}' names a {reference.function} defined in a script or notebook, which convlab "
            f"cannot import; pass the network itself (convlab.train(model={reference.function}(...)), "
            f"convlab.load(RUN, model={reference.function}(...)))."
        )
    module = import_module(reference.target)
    builder = find_builder(module, reference.function, f"module '{reference.target}'")
    return builder, UserCode("module", reference.function, module=reference.target)


# ---------------------------------------------------------------------------------------------------------
# Calling a builder


def accepted_arguments(builder: Callable[..., Any]) -> tuple[set[str], bool, list[str]]:
    """(keyword names it takes, whether it takes **kwargs, names it requires) of a builder."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):  # a builtin or C callable: no signature to read
        return set(), True, []
    names = {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters)
    required = [
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.default is inspect.Parameter.empty
    ]
    return names, takes_any, required


def option_defaults(builder: Callable[..., Any]) -> dict[str, Any]:
    """The builder's keyword parameters with defaults, besides num_classes and in_chans: its options."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {
        p.name: p.default
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        and p.default is not inspect.Parameter.empty
        and p.name not in BUILD_ARGUMENTS
    }


def call_builder(
    builder: Callable[..., Any],
    label: str,
    num_classes: int | None,
    in_chans: int | None,
    options: Mapping[str, Any],
) -> nn.Module:
    """``builder(num_classes=..., in_chans=..., **options)``, each of the first two passed only when known
    and the builder names it (``num_classes`` also through **kwargs); ``label`` names it in errors."""
    names, takes_any, required = accepted_arguments(builder)
    unknown = [key for key in options if key not in names and not takes_any]
    if unknown:
        accepted = sorted(names - set(BUILD_ARGUMENTS))
        raise ConvlabError(
            f"Your network {label} does not take option(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(accepted) or 'no options'}."
        )
    arguments = {}
    for key, value in (("num_classes", num_classes), ("in_chans", in_chans)):
        # **kwargs gets num_classes, the name torchvision's and timm's builders share, and not in_chans,
        # which torchvision's would hand on to a class that does not take it: a builder names it to get it.
        passes = key in names or (takes_any and key == "num_classes")
        if value is not None and passes and key not in options:
            arguments[key] = int(value)
    arguments.update(options)
    missing = [name for name in required if name not in arguments]
    if missing:
        flags = [
            f"--{name.replace('_', '-')} N" if name in BUILD_ARGUMENTS else f"--option {name}=VALUE"
            for name in missing
        ]
        raise ConvlabError(
            f"Your network {label} needs {', '.join(missing)}; give {' '.join(flags)} "
            f"(in Python: {', '.join(f'{name}=...' for name in missing)})."
        )
    call = f"{label}({', '.join(f'{k}={v!r}' for k, v in arguments.items())})"
    try:
        model = builder(**arguments)
    except ConvlabError:
        raise
    except Exception as error:
        raise ConvlabError(f"{call} failed{_where(error)}: {_first_line(error)}") from None
    if not isinstance(model, nn.Module):
        raise ConvlabError(f"{call} returned a {type(model).__name__}; a builder must return an nn.Module.")
    return model


def signature_default(builder: Callable[..., Any], name: str) -> int | None:
    """The builder's default for ``num_classes`` or ``in_chans``, when it declares an integer one."""
    try:
        parameter = inspect.signature(builder).parameters.get(name)
    except (TypeError, ValueError):
        return None
    if parameter is None or not isinstance(parameter.default, int) or isinstance(parameter.default, bool):
        return None
    return parameter.default


# ---------------------------------------------------------------------------------------------------------
# Checking a network against the data


def first_conv_called(model: nn.Module, input_shape: tuple[int, ...]) -> tuple[str, nn.Module] | None:
    """(name, module) of the first convolution a forward pass of ``input_shape`` images calls: the order
    of ``forward``, not of definition. On the meta device, else on the model's own when meta cannot run
    it; None when the pass calls none before it stops."""
    names = {
        module: name for name, module in model.named_modules() if isinstance(module, nn.modules.conv._ConvNd)
    }
    called: list[nn.Module] = []
    hooks = [module.register_forward_pre_hook(lambda module, args: called.append(module)) for module in names]
    try:
        for device in ("meta", model_device(model)):
            try:
                _forward_shape(model, input_shape, device)
            except Exception:  # a wrong channel count fails in the very convolution the hook saw first
                pass
            if called:
                break
    finally:
        for hook in hooks:
            hook.remove()
    return (names[called[0]], called[0]) if called else None


def check_channels(model: nn.Module, label: str, input_shape: tuple[int, ...], data: str) -> None:
    """A network whose first convolution takes other channels than the images have, as one sentence."""
    first = first_conv_called(model, input_shape)
    in_chans = input_shape[0]
    if first is None or first[1].in_channels == in_chans:
        return
    name, takes = first[0], first[1].in_channels
    raise ConvlabError(
        f"Your network {label} starts with '{name}', which takes {takes} input channels, but {data} "
        f"images have {in_chans}; build it with the in_chans it is given (in_chans={in_chans}), "
        f"or convert the images with --in-chans {takes}."
    )


def check_logits(
    model: nn.Module, label: str, input_shape: tuple[int, ...], num_classes: int, data: str
) -> None:
    """The network must turn a batch of ``input_shape`` images into logits N x ``num_classes``; run once
    on the meta device (no weights touched), on the model's own device when meta cannot run it."""
    try:
        output = _forward_shape(model, input_shape, "meta")
    except Exception:
        try:
            output = _forward_shape(model, input_shape, model_device(model))
        except Exception as error:
            size = "x".join(str(s) for s in input_shape)
            raise ConvlabError(
                f"Your network {label} cannot run on {data}'s {size} images{_where(error)}: {_first_line(error)}"
            ) from None
    if isinstance(output, str):
        raise ConvlabError(
            f"Your network {label} returns {output}; it must return one tensor of logits, "
            f"N x {num_classes} (one score per class of {data})."
        )
    if len(output) != 2 or output[1] != num_classes:
        got = "x".join(["N", *(str(s) for s in output[1:])])
        raise ConvlabError(
            f"Your network {label} returns {got} outputs, but {data} has {num_classes} classes: it must "
            f"return logits N x {num_classes}; build its last layer with the num_classes it is given "
            f"(num_classes={num_classes})."
        )


def _forward_shape(model: nn.Module, input_shape: tuple[int, ...], device) -> tuple[int, ...] | str:
    """The shape of the eval-mode output for a batch of two (a description when it is not one tensor)."""
    device = torch.device(device)
    tensors = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    stand_ins = {
        name: torch.empty_like(t, device=device) if device.type == "meta" else t
        for name, t in tensors.items()
    }
    dtype = next((t.dtype for t in tensors.values() if t.is_floating_point()), torch.float32)
    training = {module: module.training for module in model.modules()}
    try:
        model.eval()  # the zoo's convention: eval mode gives the main logits alone
        with torch.no_grad():
            x = torch.zeros((2, *input_shape), dtype=dtype, device=device)
            output = torch.func.functional_call(model, stand_ins, (x,))
    finally:
        for module, flag in training.items():
            module.training = flag
    if not isinstance(output, torch.Tensor):
        return f"a {type(output).__name__}"
    return tuple(output.shape)


# ---------------------------------------------------------------------------------------------------------
# The record of where a network comes from


@dataclass(frozen=True)
class UserCode:
    """Where a user's network is built: in a file (``file``, beside the checkpoint once saved), in an importable
    module (``module``), or nowhere convlab can reach (``unrecorded``: it needs the same code loaded)."""

    form: str  # one of CODE_FORMS
    function: str  # the builder (function or class) in the file or module
    file: str | None = None  # "file": absolute when just loaded, the copy's name once beside a checkpoint
    module: str | None = None  # "module": its dotted name; "unrecorded": where the class was defined
    sha256: str | None = None  # "file": of the source text the network was built from
    # Where a relative ``file`` lies: the checkpoint's folder, set when a record is read (never saved).
    folder: Path | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, document: Any) -> UserCode:
        where = "The record's model code"
        if not isinstance(document, dict):
            raise ConvlabError(f"{where} is not a JSON object; it was not written by convlab.")
        form = document.get("form")
        if form not in CODE_FORMS:
            raise ConvlabError(
                f"{where} has form '{form}', which this convlab cannot rebuild; it reads {', '.join(CODE_FORMS)}."
            )
        function = document.get("function")
        # an unrecorded class may have been defined inside a function ("main.<locals>.Net"): never loaded
        loadable = form == "unrecorded" or _DOTTED_NAME.fullmatch(str(function))
        if not isinstance(function, str) or not loadable:
            raise ConvlabError(f"{where} names no builder function ('function': {function!r}).")
        if form == "file" and not isinstance(document.get("file"), str):
            raise ConvlabError(f"{where} is a file but names none ('file': {document.get('file')!r}).")
        if form == "module" and not _DOTTED_NAME.fullmatch(str(document.get("module"))):
            raise ConvlabError(f"{where} names no importable module ('module': {document.get('module')!r}).")
        return cls(
            form=form,
            function=function,
            file=document.get("file"),
            module=document.get("module"),
            sha256=document.get("sha256"),
        )

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"form": self.form, "function": self.function}
        for key in ("file", "module", "sha256"):
            if getattr(self, key) is not None:
                document[key] = getattr(self, key)
        if self.form == "unrecorded":
            document["note"] = self.statement()  # for a person reading the record; never read back
        return document

    @property
    def path(self) -> Path | None:
        """A file's path: as recorded when absolute, else under the checkpoint's folder."""
        if self.file is None:
            return None
        path = Path(self.file)
        return path if path.is_absolute() or self.folder is None else self.folder / path

    @property
    def reference(self) -> str:
        """What ``--model`` and ``create_model`` take to build this network again."""
        if self.form == "file":
            return f"{self.path}:{self.function}"
        return f"{self.module}:{self.function}"

    def statement(self) -> str:
        """Why an ``unrecorded`` network cannot be rebuilt from its record, and what to do instead."""
        name = self.function.rsplit(".", 1)[-1]
        return (
            f"convlab cannot rebuild {self.module}.{self.function} by itself: it was given as a network "
            f"object whose class it cannot import (or whose constructor arguments it could not confirm); "
            f"load the run in Python with the same code: convlab.load(RUN, model={name}(...))"
        )

    def located(self, folder: str | Path) -> UserCode:
        return replace(self, folder=Path(folder))

    def load(self) -> Callable[..., Any]:
        """The builder, loaded from the recorded file or module: this runs the user's code."""
        if self.form == "unrecorded":
            raise ConvlabError(self.statement() + ".")
        if self.form == "module":
            return load_builder(Reference("module", self.module, self.function))[0]
        path = self.path
        if not path.is_file():
            raise ConvlabError(
                f"The run's network is built by {self.function} in '{path}', which is missing; a run folder "
                f"keeps {COPY_NAME} beside its checkpoints: copy the whole folder, not the checkpoint alone."
            )
        return load_builder(Reference("file", str(path), self.function))[0]

    def saved_beside(self, folder: str | Path) -> UserCode:
        """The code of a file model with a copy of its source in ``folder``, named relative to it (a checkpoint
        written there then rebuilds from the copy, whatever happens to the original later)."""
        if self.form != "file":
            return self
        folder = Path(folder)
        text = self.source_text()
        sha = _sha256(text)
        # model.py, or beside another network's model.py a name of this text's own: a copy is never overwritten
        for candidate in (COPY_NAME, f"model-{sha[:8]}.py"):
            copy = folder / candidate
            if not copy.exists():
                atomic_write(copy, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
                return replace(self, file=candidate, sha256=sha, folder=folder)
            if copy.is_file() and _sha256(copy.read_text(encoding="utf-8")) == sha:
                return replace(self, file=candidate, sha256=sha, folder=folder)
        raise ConvlabError(
            f"'{folder}' holds other files named {COPY_NAME} and model-{sha[:8]}.py; save this network's "
            f"checkpoint in a folder of its own."
        )

    def source_text(self) -> str:
        """The source the network was built from: the text that ran, else the file as it is now."""
        if self.sha256 in _FILES:
            return _FILES[self.sha256].text
        try:
            return self.path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConvlabError(f"Cannot read your network's file '{self.path}' ({error.strerror}).") from None


def code_of(builder: Callable[..., Any]) -> UserCode:
    """Where a function or class lives: a file convlab loaded, an importable module, or neither."""
    module_name = getattr(builder, "__module__", None) or "__main__"
    function = getattr(builder, "__qualname__", getattr(builder, "__name__", "network"))
    for loaded in _FILES.values():
        if loaded.module.__name__ == module_name:
            return UserCode("file", function, file=str(loaded.path), sha256=loaded.sha256)
    module = sys.modules.get(module_name)
    spec = getattr(module, "__spec__", None)
    # __main__ (a script, a notebook) and classes defined inside functions cannot be imported again
    importable = module_name != "__main__" and spec is not None and "<locals>" not in function
    return UserCode("module" if importable else "unrecorded", function, module=module_name)


def same_architecture(first: nn.Module, second: nn.Module) -> bool:
    """Whether two networks have the same state-dict keys with the same shapes (their weights fit each other)."""
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)


# ---------------------------------------------------------------------------------------------------------
# Errors from user code, as one sentence that points into it


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__


def _where(error: BaseException, path: Path | None = None) -> str:
    """`` (model.py line 7)``: the innermost frame in the user's code (outside torch and convlab)."""
    frames = traceback.extract_tb(error.__traceback__)
    if path is not None:
        frames = [f for f in frames if Path(f.filename).resolve() == Path(path).resolve()]
    else:
        frames = [f for f in frames if not _library_file(f.filename)]
    if not frames:
        return ""
    return f" ({Path(frames[-1].filename).name} line {frames[-1].lineno})"


# Frames in these folders are the machinery, not the user's code an error should point into.
_LIBRARY_FOLDERS = (Path(torch.__file__).resolve().parent, Path(__file__).resolve().parents[1])


def _library_file(filename: str) -> bool:
    if filename.startswith("<"):
        return True
    path = Path(filename).resolve()
    return any(path.is_relative_to(folder) for folder in _LIBRARY_FOLDERS)
