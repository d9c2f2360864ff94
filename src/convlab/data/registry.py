"""The named data sets: what they are, where convlab looks for them, and how they are read or downloaded.

Search order: ``data_root`` (``--data-root``; default ``$CONVLAB_DATA`` or ``~/.cache/convlab/data``),
then the folder a distribution package installs (Debian's ``dataset-fashion-mnist``), then a
download with torchvision's dataset code into ``data_root`` when ``download`` is true.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from convlab.data.bundle import Holdout, stratified_split
from convlab.data.memory import MemoryBundle, build_memory_bundle
from convlab.data.readers import (
    Arrays,
    digits_file,
    has_cifar,
    has_idx_set,
    has_stl10,
    has_svhn,
    read_cifar,
    read_digits,
    read_idx_folder,
    read_stl10,
    read_svhn,
)
from convlab.errors import ConvlabError, unknown_name_error

DOWNLOAD_SOCKET_TIMEOUT = 30  # seconds without a byte before a download counts as failed, not a hang

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# CIFAR-100's fine labels in label order (the release's meta file; it overrides this list when present).
CIFAR100_CLASSES = (
    "apple",
    "aquarium_fish",
    "baby",
    "bear",
    "beaver",
    "bed",
    "bee",
    "beetle",
    "bicycle",
    "bottle",
    "bowl",
    "boy",
    "bridge",
    "bus",
    "butterfly",
    "camel",
    "can",
    "castle",
    "caterpillar",
    "cattle",
    "chair",
    "chimpanzee",
    "clock",
    "cloud",
    "cockroach",
    "couch",
    "crab",
    "crocodile",
    "cup",
    "dinosaur",
    "dolphin",
    "elephant",
    "flatfish",
    "forest",
    "fox",
    "girl",
    "hamster",
    "house",
    "kangaroo",
    "keyboard",
    "lamp",
    "lawn_mower",
    "leopard",
    "lion",
    "lizard",
    "lobster",
    "man",
    "maple_tree",
    "motorcycle",
    "mountain",
    "mouse",
    "mushroom",
    "oak_tree",
    "orange",
    "orchid",
    "otter",
    "palm_tree",
    "pear",
    "pickup_truck",
    "pine_tree",
    "plain",
    "plate",
    "poppy",
    "porcupine",
    "possum",
    "rabbit",
    "raccoon",
    "ray",
    "road",
    "rocket",
    "rose",
    "sea",
    "seal",
    "shark",
    "shrew",
    "skunk",
    "skyscraper",
    "snail",
    "snake",
    "spider",
    "squirrel",
    "streetcar",
    "sunflower",
    "sweet_pepper",
    "table",
    "tank",
    "telephone",
    "television",
    "tiger",
    "tractor",
    "train",
    "trout",
    "tulip",
    "turtle",
    "wardrobe",
    "whale",
    "willow_tree",
    "wolf",
    "woman",
    "worm",
)
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)  # Xiao et al. 2017, Table 1
STL10_CLASSES = ("airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck")
DIGITS = tuple(str(d) for d in range(10))
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0  # fixed: every run tests on the same 359 images, whatever the training seed


@dataclass(frozen=True)
class NamedSet:
    """One row of the table below: a data set as published, and where its files live."""

    name: str
    title: str
    classes: tuple[str, ...]
    train_size: int  # the official training split (val is carved out of it)
    test_size: int
    image_size: tuple[int, int]
    in_chans: int
    reference: str
    folders: tuple[str, ...]  # under data_root, first = where to place the files by hand
    files: str  # what to place there, in words
    has_files: Callable[[Path], bool]
    read: Callable[[Path], Arrays]
    system_folders: tuple[str, ...] = ()  # where a distribution package installs it
    system_package: str | None = None  # e.g. a Debian package
    url: str = ""


_IDX_FILES = "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"

NAMED_SETS: dict[str, NamedSet] = {
    s.name: s
    for s in (
        NamedSet(
            "mnist",
            "MNIST",
            DIGITS,
            60000,
            10000,
            (28, 28),
            1,
            "LeCun et al. 1998",
            ("mnist", "MNIST/raw"),
            _IDX_FILES,
            has_idx_set,
            read_idx_folder,
            url="http://yann.lecun.com/exdb/mnist/",
        ),
        NamedSet(
            "fashion-mnist",
            "Fashion-MNIST",
            FASHION_MNIST_CLASSES,
            60000,
            10000,
            (28, 28),
            1,
            "Xiao et al. 2017",
            ("fashion-mnist", "FashionMNIST/raw"),
            _IDX_FILES,
            has_idx_set,
            read_idx_folder,
            system_folders=("/usr/share/datasets/fashion-mnist",),
            system_package="dataset-fashion-mnist",
            url="https://github.com/zalandoresearch/fashion-mnist",
        ),
        NamedSet(
            "cifar10",
            "CIFAR-10",
            CIFAR10_CLASSES,
            50000,
            10000,
            (32, 32),
            3,
            "Krizhevsky 2009",
            ("cifar-10-batches-py",),
            "data_batch_1 ... data_batch_5, test_batch and batches.meta (the python version)",
            lambda folder: has_cifar(folder, fine=False),
            lambda folder: read_cifar(folder, fine=False),
            url="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        NamedSet(
            "cifar100",
            "CIFAR-100",
            CIFAR100_CLASSES,
            50000,
            10000,
            (32, 32),
            3,
            "Krizhevsky 2009",
            ("cifar-100-python",),
            "train, test and meta (the python version)",
            lambda folder: has_cifar(folder, fine=True),
            lambda folder: read_cifar(folder, fine=True),
            url="https://www.cs.toronto.edu/~kriz/cifar.html",
        ),
        NamedSet(
            "svhn",
            "SVHN",
            DIGITS,
            73257,
            26032,
            (32, 32),
            3,
            "Netzer et al. 2011",
            ("svhn",),
            "train_32x32.mat and test_32x32.mat (format 2, cropped digits)",
            has_svhn,
            read_svhn,
            url="http://ufldl.stanford.edu/housenumbers/",
        ),
        NamedSet(
            "stl10",
            "STL-10",
            STL10_CLASSES,
            5000,
            8000,
            (96, 96),
            3,
            "Coates et al. 2011",
            ("stl10_binary",),
            "train_X.bin, train_y.bin, test_X.bin, test_y.bin and class_names.txt",
            has_stl10,
            read_stl10,
            url="https://cs.stanford.edu/~acoates/stl10/",
        ),
        NamedSet(
            "digits",
            "digits (UCI, scikit-learn)",
            DIGITS,
            1438,
            359,
            (8, 8),
            1,
            "Alpaydin & Kaynak 1998",
            (),
            "nothing: scikit-learn includes it",
            lambda folder: True,
            lambda folder: read_digits(),
            url="https://archive.ics.uci.edu/dataset/80",
        ),
    )
}
ALIASES = {
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "stl-10": "stl10",
}


def default_data_root() -> Path:
    """``$CONVLAB_DATA`` if set, else ``~/.cache/convlab/data``."""
    return Path(os.environ.get("CONVLAB_DATA") or Path.home() / ".cache" / "convlab" / "data").expanduser()


def named_set(name: str) -> NamedSet:
    key = ALIASES.get(name.lower(), name.lower())
    if key not in NAMED_SETS:
        raise unknown_name_error("data set", name, NAMED_SETS)
    return NAMED_SETS[key]


def is_named_set(name: str) -> bool:
    return ALIASES.get(name.lower(), name.lower()) in NAMED_SETS


def candidate_folders(spec: NamedSet, data_root: str | Path | None = None) -> list[Path]:
    """Every folder convlab looks in for ``spec``, in order."""
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    return [root / folder for folder in spec.folders] + [Path(folder) for folder in spec.system_folders]


def locate(name: str, data_root: str | Path | None = None) -> Path | None:
    """The first folder that holds the set's files, or None (digits: scikit-learn's data file)."""
    spec = named_set(name)
    if spec.name == "digits":
        return digits_file()
    return next((folder for folder in candidate_folders(spec, data_root) if spec.has_files(folder)), None)


def describe_location(spec: NamedSet, folder: Path) -> str:
    if spec.name == "digits":
        return f"scikit-learn's bundled copy ({folder})"
    if str(folder) in spec.system_folders and spec.system_package:
        return f"{folder} (Debian package {spec.system_package})"
    return str(folder)


@contextlib.contextmanager
def _download_timeout(seconds: float):
    # torchvision's urllib calls have no timeout: a silently dropped connection would hang forever.
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds if previous is None else previous)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _torchvision_download(spec: NamedSet, root: Path) -> None:
    import torchvision.datasets as tv

    root.mkdir(parents=True, exist_ok=True)
    # torchvision's own layouts: root/MNIST/raw, root/FashionMNIST/raw, root/cifar-10-batches-py, ...
    if spec.name == "mnist":
        tv.MNIST(str(root), train=True, download=True)
    elif spec.name == "fashion-mnist":
        tv.FashionMNIST(str(root), train=True, download=True)
    elif spec.name == "cifar10":
        tv.CIFAR10(str(root), train=True, download=True)
    elif spec.name == "cifar100":
        tv.CIFAR100(str(root), train=True, download=True)
    elif spec.name == "svhn":
        for split in ("train", "test"):
            tv.SVHN(str(root / "svhn"), split=split, download=True)
    elif spec.name == "stl10":
        tv.STL10(str(root), split="train", download=True)


def _not_found(spec: NamedSet, data_root: str | Path | None, why: str) -> ConvlabError:
    looked = candidate_folders(spec, data_root)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    root_option = "" if root == default_data_root() else f" --data-root {root}"
    ways = []
    if spec.system_package:
        ways.append(f"install it with `sudo apt-get install {spec.system_package}`")
    ways.append(f"run `convlab data download {spec.name}{root_option}` on a machine with internet access")
    ways.append(f"place {spec.files} under {looked[0]} (from {spec.url})")
    return ConvlabError(
        f"{spec.title} is not available: convlab looked in {', '.join(str(p) for p in looked)}, and {why}; "
        f"to get it, {', or '.join(ways)}."
    )


def download(name: str, data_root: str | Path | None = None) -> Path:
    """Download a named set into ``data_root`` with torchvision (which checks the archive's MD5);
    returns the folder that holds it. Without network: the same ConvlabError as a missing set."""
    spec = named_set(name)
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    if spec.name == "digits":
        return digits_file()
    try:
        with _download_timeout(DOWNLOAD_SOCKET_TIMEOUT), contextlib.redirect_stdout(sys.stderr):
            _torchvision_download(spec, root)
    except (
        OSError,
        RuntimeError,
        ValueError,
    ) as error:  # URLError is an OSError; MNIST wraps it in RuntimeError
        reason = " ".join(str(error).split())
        # torchvision's MNIST lists every mirror it tried; the first network error says enough.
        match = re.search(r"<urlopen error [^>]*>", reason)
        reason = match.group(0) if match else reason[:160] + ("..." if len(reason) > 160 else "")
        raise _not_found(spec, data_root, f"the download failed ({reason})") from None
    folder = locate(spec.name, root)
    if folder is None:
        raise _not_found(spec, data_root, "the download finished without the expected files")
    return folder


def _folder_signature(folder: Path) -> tuple:
    """Names, sizes and modification times of the files: a changed file misses the cache."""
    folder = folder if folder.is_dir() else folder.parent
    return tuple(
        sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    )


@functools.lru_cache(maxsize=2)
def _read(name: str, folder: str, signature: tuple) -> Arrays:
    """Decoded arrays of the last two sets read, so that loading a set again in one process (training,
    then evaluation; another size or seed) skips decompression."""
    return NAMED_SETS[name].read(Path(folder))


def load_named(
    name: str,
    *,
    data_root: str | Path | None = None,
    image_size: Sequence[int] | None = None,
    in_chans: int | None = None,
    val_split: float | Holdout = 0.1,
    seed: int = 0,
    download_missing: bool = True,
    limit: int | None = None,
    keep_classes: Sequence[int | str] | str | None = None,
    limit_per_class: int | None = None,
    resize: str = "squash",
) -> MemoryBundle:
    """A named set as a MemoryBundle: found (or downloaded), decoded once, split and converted."""
    spec = named_set(name)
    folder = locate(spec.name, data_root)
    if folder is None:
        if not download_missing:
            raise _not_found(spec, data_root, "downloading was not allowed (download=False)")
        folder = download(spec.name, data_root)
    arrays = _read(spec.name, str(folder), _folder_signature(folder))
    classes = list(arrays.classes or spec.classes)
    arrays = dataclasses.replace(arrays)  # the cached tensors are shared, never written to
    if (
        spec.name == "digits"
    ):  # no official test split: a fixed stratified 20% (Alpaydin & Kaynak's is not bundled)
        keep, test = stratified_split(
            arrays.train_labels, DIGITS_TEST_FRACTION, DIGITS_TEST_SEED, classes, "test"
        )
        arrays.test_images, arrays.test_labels = arrays.train_images[test], arrays.train_labels[test]
        arrays.train_images, arrays.train_labels = arrays.train_images[keep], arrays.train_labels[keep]
    return build_memory_bundle(
        spec.name,
        classes,
        arrays.train_images,
        arrays.train_labels,
        arrays.test_images,
        arrays.test_labels,
        val_split=val_split,
        seed=seed,
        limit=limit,
        in_chans=in_chans,
        image_size=image_size,
        keep_classes=keep_classes,
        limit_per_class=limit_per_class,
        resize=resize,
        source=f"{spec.title} from {describe_location(spec, folder)}",
    )


def list_datasets(data_root: str | Path | None = None) -> list[dict]:
    """One row per named set for `convlab data list`: what it is and where it is on this machine now."""
    rows = []
    for spec in NAMED_SETS.values():
        folder = locate(spec.name, data_root)
        rows.append(
            {
                "name": spec.name,
                "title": spec.title,
                "classes": len(spec.classes),
                "train": spec.train_size,
                "test": spec.test_size,
                "image_size": list(spec.image_size),
                "in_chans": spec.in_chans,
                "reference": spec.reference,
                "available": folder is not None,
                "location": describe_location(spec, folder) if folder is not None else None,
                "looked_in": [str(p) for p in candidate_folders(spec, data_root)],
            }
        )
    return rows
