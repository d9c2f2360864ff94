"""Readers for the on-disk formats of the named sets, each returning uint8 (N, C, H, W) + int64 labels.

CIFAR, SVHN and STL-10 are the layouts torchvision downloads. We read the files ourselves
rather than through torchvision.datasets.CIFAR10/SVHN/STL10 because those constructors check
every file's MD5 against the official release and refuse anything else (a re-packed copy, or
the tiny files the tests write); the formats themselves are a few lines each. Downloads do go
through torchvision, which checks the archive's MD5 after downloading. The CIFAR pickles are read by an
allow-list unpickler (``_CifarUnpickler``) that builds plain data only, so a planted file runs no code.
"""

from __future__ import annotations

import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from convlab.data.idx import IMAGES_MAGIC, LABELS_MAGIC, read_idx
from convlab.errors import ConvlabError


@dataclass
class Arrays:
    """What a reader returns: the training pool, the official test split, and class names if the files have them."""

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    classes: list[str] | None = None
    files: list[Path] = field(default_factory=list)


# -- MNIST and Fashion-MNIST: IDX ------------------------------------------------------------------------
IDX_STEMS = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_file(folder: Path, stem: str) -> Path | None:
    """``stem.gz`` or ``stem`` in ``folder`` (also the ``stem.idx3-ubyte`` spelling some mirrors use)."""
    for name in (f"{stem}.gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / name).is_file():
            return folder / name
    return None


def has_idx_set(folder: Path) -> bool:
    return all(idx_file(folder, stem) is not None for stem in IDX_STEMS.values())


def read_idx_pair(images_path: str | Path, labels_path: str | Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An IDX images file (N, H, W) and labels file (N) as uint8 (N, 1, H, W) and int64 (N)."""
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if len(images) != len(labels):
        raise ConvlabError(
            f"IDX images '{images_path}' hold {len(images)} images but labels '{labels_path}' hold {len(labels)}."
        )
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def read_idx_folder(folder: Path) -> Arrays:
    paths = {key: idx_file(folder, stem) for key, stem in IDX_STEMS.items()}
    train_images, train_labels = read_idx_pair(paths["train_images"], paths["train_labels"])
    test_images, test_labels = read_idx_pair(paths["test_images"], paths["test_labels"])
    return Arrays(train_images, train_labels, test_images, test_labels, files=list(paths.values()))


# -- CIFAR-10 / CIFAR-100: python pickles ------------------------------------------------------------------
CIFAR10_FILES = {
    "train": [f"data_batch_{i}" for i in range(1, 6)],
    "test": ["test_batch"],
    "meta": "batches.meta",
}
CIFAR100_FILES = {"train": ["train"], "test": ["test"], "meta": "meta"}


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a callable outside the CIFAR allow-list."""


class _NdarrayMark:
    """What the name numpy.ndarray unpickles to: a marker only _reconstruct accepts, not the class itself,
    so no opcode can call ndarray(shape) with a forged shape."""


def _reconstruct(subtype, shape, dtype):
    # numpy's array pickle: _reconstruct(ndarray, (0,), b'b'), then __setstate__ with the real shape and data.
    # Built empty whatever shape is asked for, so a forged shape cannot allocate; the state sets the size.
    if not isinstance(subtype, _NdarrayMark):
        raise pickle.UnpicklingError(f"_reconstruct of {subtype!r}, not numpy.ndarray")
    return np.ndarray.__new__(np.ndarray, (0,), np.dtype(dtype))


def _dtype(spec, align=False, copy=True):
    dtype = np.dtype(spec, bool(align), bool(copy))
    if dtype.hasobject:  # object arrays hold pickled objects, not numbers
        raise pickle.UnpicklingError("numpy object dtype")
    return dtype


def _scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy scalar of an object dtype")
    if isinstance(data, str):  # a Python 2 pickle's str, decoded as latin1
        data = data.encode("latin1")
    return np.frombuffer(data, dtype=dtype, count=1)[0]


def _frombuffer(buffer, dtype, shape, order):
    if not isinstance(dtype, np.dtype) or dtype.hasobject:
        raise pickle.UnpicklingError("numpy buffer of an object dtype")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order).copy()


def _latin1(text, encoding="latin1"):
    # How Python 3 writes bytes in protocol 2: _codecs.encode(str, 'latin1'); nothing else is accepted.
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode other than latin1 of a str")
    return text.encode("latin1")


# Every global a CIFAR batch (Python 2 or 3, any protocol, numpy 1 or 2) refers to, each mapped to a
# function that builds only that data; a pickle that names anything else (os.system, builtins.eval...)
# is refused before it is called.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"): _NdarrayMark(),
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1,
    **{(f"{core}.multiarray", "_reconstruct"): _reconstruct for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.multiarray", "scalar"): _scalar for core in ("numpy.core", "numpy._core")},
    **{(f"{core}.numeric", "_frombuffer"): _frombuffer for core in ("numpy.core", "numpy._core")},
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles plain data only: dicts, lists, tuples, str, bytes, numbers and numpy arrays. No pickled
    callable runs: ``find_class`` (the only way a pickle reaches code, EXT opcodes included) answers only
    the names above."""

    def find_class(self, module: str, name: str):
        try:
            return _CIFAR_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def _unpickle(path: Path) -> dict:
    # The CIFAR batches are pickles: read them with an allow-list unpickler rather than check the release's
    # MD5s, so that re-packed copies and the tests' tiny files still load while no pickle can run code.
    # latin1 turns the Python 2 strings of the originals into str keys.
    try:
        with open(path, "rb") as handle:
            entry = _CifarUnpickler(handle, encoding="latin1").load()
    except _RefusedGlobal as error:
        raise ConvlabError(
            f"CIFAR file '{path}' is refused without being run: it names the Python callable '{error}', and "
            f"convlab reads only plain data from CIFAR pickles (dicts, lists, strings, numbers, numpy arrays)."
        ) from None
    except (
        OSError,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
        KeyError,
        MemoryError,
        RecursionError,
        UnicodeError,
    ) as error:
        # MemoryError has no message: a length the pickle declares beyond what memory holds
        reason = str(error) or f"{type(error).__name__}: it declares more data than memory holds"
        raise ConvlabError(f"Cannot read CIFAR file '{path}' ({reason}).") from None
    if not isinstance(entry, dict):
        raise ConvlabError(
            f"CIFAR file '{path}' holds a {type(entry).__name__}, not the dict of the CIFAR format."
        )
    return {key.decode() if isinstance(key, bytes) else key: value for key, value in entry.items()}


def has_cifar(folder: Path, fine: bool) -> bool:
    files = CIFAR100_FILES if fine else CIFAR10_FILES
    return all((folder / name).is_file() for name in files["train"] + files["test"])


def _check_labels(labels: np.ndarray, images: int, classes: int, path: Path, stored: str = "") -> None:
    """One label per image, each a class index: a file that says otherwise is refused here, where its name is
    known, rather than failing later in a loss or a bincount. ``stored``: how the format writes the labels."""
    if labels.size != images:
        raise ConvlabError(
            f"'{path}' holds {images:,} images but {labels.size:,} labels; expected one per image."
        )
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        raise ConvlabError(
            f"'{path}' has labels from {labels.min() + (1 if stored else 0)} to {labels.max() + (1 if stored else 0)}; "
            f"expected {stored or f'0 to {classes - 1}'}."
        )


def _cifar_split(
    folder: Path, names: list[str], label_key: str, classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for name in names:
        entry = _unpickle(folder / name)
        if "data" not in entry or label_key not in entry:
            raise ConvlabError(f"CIFAR file '{folder / name}' lacks the 'data' or '{label_key}' entry.")
        try:
            data = np.asarray(entry["data"], dtype=np.uint8)
            labels.append(np.asarray(entry[label_key], dtype=np.int64).reshape(-1))
        except (TypeError, ValueError, OverflowError) as error:
            raise ConvlabError(
                f"CIFAR file '{folder / name}' has 'data' or '{label_key}' that are not numbers ({error})."
            ) from None
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise ConvlabError(
                f"CIFAR file '{folder / name}' has data of shape {data.shape}; expected (N, 3072)."
            )
        _check_labels(labels[-1], len(data), classes, folder / name)
        images.append(data.reshape(-1, 3, 32, 32))  # rows hold the R plane, then G, then B, each 32x32
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_cifar(folder: Path, fine: bool = False) -> Arrays:
    """``cifar-10-batches-py`` (data_batch_1..5, test_batch, batches.meta) or ``cifar-100-python``
    (train, test, meta; the 100 fine labels)."""
    files = CIFAR100_FILES if fine else CIFAR10_FILES
    label_key = "fine_labels" if fine else "labels"
    classes = 100 if fine else 10
    train_images, train_labels = _cifar_split(folder, files["train"], label_key, classes)
    test_images, test_labels = _cifar_split(folder, files["test"], label_key, classes)
    classes = None
    if (folder / files["meta"]).is_file():
        meta = _unpickle(folder / files["meta"])
        names = meta.get("fine_label_names" if fine else "label_names")
        classes = (
            [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names is not None else None
        )
    used = [folder / name for name in files["train"] + files["test"]]
    return Arrays(train_images, train_labels, test_images, test_labels, classes, used)


# -- SVHN: MATLAB files ------------------------------------------------------------------------------------
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}


def has_svhn(folder: Path) -> bool:
    return all((folder / name).is_file() for name in SVHN_FILES.values())


# The most values a compressed MATLAB variable can inflate to per byte of file: deflate's limit is 1,032.
DEFLATE_MAX_RATIO = 1032


def _svhn_split(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    import scipy.io

    try:
        declared = {name: shape for name, shape, _ in scipy.io.whosmat(path)}  # the headers only
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError... for damaged files
        raise ConvlabError(f"Cannot read SVHN file '{path}' ({error}).") from None
    # A header's dimensions are checked before loadmat allocates them: X as (H, W, 3, N) and y as N labels,
    # and no more values than the file could hold even compressed (a 1 KB file claiming 10^9 images).
    x_shape, y_shape = declared.get("X"), declared.get("y")
    if x_shape is None or y_shape is None:
        raise ConvlabError(f"SVHN file '{path}' lacks the 'X' or 'y' variable of the SVHN format.")
    if len(x_shape) != 4 or x_shape[2] != 3 or math.prod(y_shape) != x_shape[3]:
        raise ConvlabError(
            f"SVHN file '{path}' declares X of shape {x_shape} and y of shape {y_shape}; expected "
            "(32, 32, 3, N) and N labels."
        )
    limit = DEFLATE_MAX_RATIO * path.stat().st_size
    if math.prod(x_shape) + math.prod(y_shape) > limit:
        raise ConvlabError(
            f"SVHN file '{path}' declares {math.prod(x_shape):,} pixel values in {path.stat().st_size:,} bytes, "
            f"more than even a compressed file holds ({DEFLATE_MAX_RATIO:,} per byte); the file is damaged."
        )
    try:
        loaded = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as error:  # scipy raises ValueError, TypeError, MatReadError... for damaged files
        raise ConvlabError(f"Cannot read SVHN file '{path}' ({error}).") from None
    if "X" not in loaded or "y" not in loaded:
        raise ConvlabError(f"SVHN file '{path}' lacks the 'X' or 'y' variable of the SVHN format.")
    data = np.asarray(loaded["X"], dtype=np.uint8)  # (32, 32, 3, N): MATLAB's column-major H, W, C, N
    if data.ndim != 4 or data.shape[2] != 3:
        raise ConvlabError(f"SVHN file '{path}' has X of shape {data.shape}; expected (32, 32, 3, N).")
    labels = np.asarray(loaded["y"], dtype=np.int64).reshape(-1)
    _check_labels(labels - 1, data.shape[3], 10, path, stored="1 to 10 (the digit 0 is stored as 10)")
    labels[labels == 10] = 0  # SVHN labels the digit 0 as 10 (Netzer et al. 2011)
    images = np.ascontiguousarray(data.transpose(3, 2, 0, 1))
    return torch.from_numpy(images), torch.from_numpy(labels)


def read_svhn(folder: Path) -> Arrays:
    """``train_32x32.mat`` and ``test_32x32.mat`` (the cropped-digits format; 'extra' is not used)."""
    train_images, train_labels = _svhn_split(folder / SVHN_FILES["train"])
    test_images, test_labels = _svhn_split(folder / SVHN_FILES["test"])
    return Arrays(
        train_images,
        train_labels,
        test_images,
        test_labels,
        files=[folder / name for name in SVHN_FILES.values()],
    )


# -- STL-10: raw binary ------------------------------------------------------------------------------------
STL10_FILES = {"train": ("train_X.bin", "train_y.bin"), "test": ("test_X.bin", "test_y.bin")}
STL10_SIZE = 96


def has_stl10(folder: Path) -> bool:
    return all((folder / name).is_file() for pair in STL10_FILES.values() for name in pair)


def _stl10_split(folder: Path, images_name: str, labels_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    image_bytes = 3 * STL10_SIZE * STL10_SIZE
    data = np.fromfile(folder / images_name, dtype=np.uint8)
    labels = np.fromfile(folder / labels_name, dtype=np.uint8).astype(np.int64) - 1  # stored 1..10
    if data.size % image_bytes or data.size // image_bytes != labels.size:
        raise ConvlabError(
            f"STL-10 file '{folder / images_name}' holds {data.size} bytes, not {labels.size} images of "
            f"3x96x96 for the {labels.size} labels of '{folder / labels_name}'."
        )
    _check_labels(labels, labels.size, 10, folder / labels_name, stored="1 to 10")
    # Each image is stored channel by channel in column-major order: transpose to (C, H, W).
    images = np.ascontiguousarray(data.reshape(-1, 3, STL10_SIZE, STL10_SIZE).transpose(0, 1, 3, 2))
    return torch.from_numpy(images), torch.from_numpy(labels)


def read_stl10(folder: Path) -> Arrays:
    """``stl10_binary``: train_X.bin / train_y.bin (5,000), test_X.bin / test_y.bin (8,000), class_names.txt."""
    train_images, train_labels = _stl10_split(folder, *STL10_FILES["train"])
    test_images, test_labels = _stl10_split(folder, *STL10_FILES["test"])
    classes = None
    if (folder / "class_names.txt").is_file():
        classes = [
            line.strip() for line in (folder / "class_names.txt").read_text().splitlines() if line.strip()
        ]
    return Arrays(
        train_images,
        train_labels,
        test_images,
        test_labels,
        classes,
        [folder / name for pair in STL10_FILES.values() for name in pair],
    )


# -- digits: scikit-learn's bundled 8x8 set ----------------------------------------------------------------
def digits_file() -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "data" / "digits.csv.gz"


def read_digits() -> Arrays:
    """The 1,797 8x8 digits of the UCI optical recognition set bundled with scikit-learn (values 0..16)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # 0..16 -> 0..255, rounded: 16 is full ink.
    images = np.rint(digits.images * (255 / 16)).astype(np.uint8)[:, None]
    return Arrays(
        torch.from_numpy(images), torch.from_numpy(digits.target.astype(np.int64)), files=[digits_file()]
    )
