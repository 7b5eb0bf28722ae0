"""dataset.py -- ddpm.Dataset: a data set the library reads (ddpm_dataset_load: Fashion-MNIST, IDX, CIFAR-10,
a folder of PNGs), its images as NumPy arrays."""
import dataclasses
import os

import numpy as np

from . import _lib
from ._convert import cstr, fptr, images_out, iptr, string
from ._lib import ffi, lib

SPLITS = {"train": lib.DDPM_SPLIT_TRAIN, "test": lib.DDPM_SPLIT_TEST}


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """ddpm_dataset_info."""
    n: int
    channels: int
    height: int
    width: int
    num_classes: int
    desc: str


class Dataset(_lib.Handle):
    """Dataset(path=None, split="train", limit=0): up to limit images (0: all) of split ("train" |
    "test") of path: None or "fashion-mnist" (Debian's Fashion-MNIST), an IDX file or MNIST-layout
    folder, a CIFAR-10 binary folder or .bin batch, or a folder of PNGs (one subfolder per class).
    The images stay in the library's memory; .images() copies a range out."""
    _free, _what = "ddpm_dataset_free", "data set"

    def __init__(self, path=None, split="train", limit=0):
        if split not in SPLITS:
            raise ValueError(f"split: 'train' or 'test', got {split!r}")
        keep, out = [], ffi.new("ddpm_dataset **")
        self._h = None
        _lib.call(lib.ddpm_dataset_load, cstr(None if path is None else os.fspath(path), keep), SPLITS[split],
                  int(limit), out)
        self._h = out[0]
        i = ffi.new("ddpm_dataset_info *")
        _lib.call(lib.ddpm_dataset_get_info, self._h, i, handle=self._h)
        self.info = DatasetInfo(i.n, i.channels, i.height, i.width, i.num_classes, string(i.desc))
        self.path = path

    def __len__(self):
        return self.info.n

    def __repr__(self):
        return f"<ddpm.Dataset {self.info.desc!r}>" if self._h is not None else "<ddpm.Dataset (closed)>"

    @property
    def class_names(self):
        """The names of the classes (ddpm_dataset_class_name); [] for unlabelled data."""
        h = self._handle()
        with _lib.LOCK:
            return [string(lib.ddpm_dataset_class_name(h, k)) for k in range(self.info.num_classes)]

    def images(self, first=0, n=None, uint8=False):
        """Images first .. first+n-1 (n None: to the end) and their labels (ddpm_dataset_images):
        (float32 [n, C, H, W] in [-1, 1], int32 [n] labels, -1 for unlabelled data); with uint8=True
        the images as uint8 [n, H, W, C] (a converted copy)."""
        h = self._handle()
        i = self.info
        if n is None:
            n = i.n - first
        x = np.empty((max(n, 0), i.channels, i.height, i.width), dtype=np.float32)
        labels = np.empty(max(n, 0), dtype=np.int32)
        _lib.call(lib.ddpm_dataset_images, h, int(first), int(n), fptr(x), iptr(labels), handle=h)
        return images_out(x, uint8), labels
