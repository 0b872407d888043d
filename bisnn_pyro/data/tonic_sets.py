"""N-MNIST and DVS128 Gesture through ``tonic.datasets``, never downloading.

tonic downloads in a dataset's constructor whenever its own completeness check fails.  These
loaders check for the extracted files themselves, raise a one-line error naming the folder when
they are missing, and otherwise build the tonic dataset with that check bypassed
(``without_download``), so nothing is ever fetched.
DVS Gesture's file order (os.walk order) is sorted so indices are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..adapters.tonic_internals import tonic_module, without_download
from ..errors import one_line
from .events import DataError, EventFrames, check_events

NMNIST_SOURCE = "N-MNIST (Orchard et al. 2015), Mendeley Data 468j46mzdv: Train.zip / Test.zip"
GESTURE_SOURCE = "DVS128 Gesture, tonic's preprocessed release: ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz"
NMNIST_CLASSES, GESTURE_CLASSES = 10, 11


def _require(files: list[Path], what: str) -> None:
    if not files:
        raise DataError(what)


class TonicFrames(Dataset):
    """Wraps a tonic dataset of events: (frames (T, P, H, W), label), each recording checked first:
    a file tonic cannot read, events off the sensor or a label out of range raise
    ``DataError`` naming the file."""

    def __init__(self, dataset, frames: EventFrames, classes: int):
        self.dataset, self.frames, self.classes = dataset, frames, classes

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path = self.dataset.data[index]
        try:
            events, label = self.dataset[index]
        except Exception as error:  # tonic's readers raise many types for a damaged file
            raise DataError(f"{path}: cannot be read ({type(error).__name__}: {one_line(error)})") from None
        check_events(events, self.frames.sensor_size, str(path))
        if not (isinstance(label, (int, np.integer)) and 0 <= label < self.classes):
            raise DataError(f"{path}: label {label!r} is not one of the {self.classes} classes 0-{self.classes - 1}")
        return self.frames(events), int(label)


def nmnist(root: str | Path, frames: EventFrames, *, train: bool = True) -> TonicFrames:
    folder = Path(root) / "NMNIST" / ("Train" if train else "Test")
    _require(
        sorted(folder.glob("*/*.bin")),
        f"N-MNIST not found: no {folder}/<digit>/*.bin; extract the {NMNIST_SOURCE} into {Path(root) / 'NMNIST'}",
    )
    dataset = without_download(tonic_module("datasets").NMNIST)(save_to=str(root), train=train)
    return TonicFrames(dataset, frames, NMNIST_CLASSES)


def dvs_gesture(root: str | Path, frames: EventFrames, *, train: bool = True) -> TonicFrames:
    folder = Path(root) / "DVSGesture" / ("ibmGestureTrain" if train else "ibmGestureTest")
    _require(
        sorted(folder.glob("user*_*/*.npy")),
        f"DVS128 Gesture not found: no {folder}/user<NN>_<lighting>/<label>.npy; "
        f"extract the {GESTURE_SOURCE} into {Path(root) / 'DVSGesture'}",
    )
    dataset = without_download(tonic_module("datasets").DVSGesture)(save_to=str(root), train=train)
    order = sorted(range(len(dataset.data)), key=lambda i: str(dataset.data[i]))
    dataset.data = [dataset.data[i] for i in order]
    dataset.targets = [dataset.targets[i] for i in order]
    return TonicFrames(dataset, frames, GESTURE_CLASSES)
