"""Data for training and evaluation: named sets, image folders and IDX files behind one load_data.

``load_data(...)`` returns a DataBundle (classes, splits, mean/std, loaders); ``read_image`` and
``normalize`` turn single files into model input the same way, for prediction.
"""

from convlab.choices import AUGMENTATIONS, parse_augment
from convlab.data.bundle import DataBundle, Holdout
from convlab.data.idx import read_idx, write_idx
from convlab.data.images import IMAGE_EXTENSIONS, normalize, read_image
from convlab.data.load import load_data
from convlab.data.registry import NAMED_SETS, default_data_root, download, locate

__all__ = [
    "AUGMENTATIONS",
    "IMAGE_EXTENSIONS",
    "NAMED_SETS",
    "DataBundle",
    "Holdout",
    "default_data_root",
    "download",
    "load_data",
    "locate",
    "normalize",
    "parse_augment",
    "read_idx",
    "read_image",
    "write_idx",
]
