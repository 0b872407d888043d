"""N-MNIST and DVS128 Gesture through ``tonic.datasets``, never downloading.

tonic downloads in a dataset's constructor whenever its own completeness check fails.  These
loaders check for the extracted files themselves, raise a one-line error naming the folder when
they are missing, and otherwise build the tonic dataset with that check bypassed
(:func:`~bisnn_pyro.adapters.tonic_internals.without_download`), so nothing is ever fetched.  DVS Gesture's file order (os.walk order) is sorted so indices are reproducible.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..adapters.tonic_internals import without_download
from .events import DataError, EventFrames

NMNIST_SOURCE = "N-MNIST (Orchard et al. 2015), Mendeley Data 468j46mzdv: Train.zip / Test.zip"
GESTURE_SOURCE = "DVS128 Gesture, tonic's preprocessed release: ibmGestureTrain.tar.gz / ibmGestureTest.tar.gz"


def _require(files: list[Path], what: str) -> None:
    if not files:
        raise DataError(what)


class TonicFrames(Dataset):
    """Wraps a tonic dataset whose transform gives frames: (frames (T, P, H, W), label)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        frames, label = self.dataset[index]
        return frames, int(label)


def nmnist(root: str | Path, frames: EventFrames, *, train: bool = True) -> TonicFrames:
    import tonic.datasets

    folder = Path(root) / "NMNIST" / ("Train" if train else "Test")
    _require(
        sorted(folder.glob("*/*.bin")),
        f"N-MNIST not found: no {folder}/<digit>/*.bin; extract the {NMNIST_SOURCE} into {Path(root) / 'NMNIST'}",
    )
    dataset = without_download(tonic.datasets.NMNIST)(save_to=str(root), train=train, transform=frames)
    return TonicFrames(dataset)


def dvs_gesture(root: str | Path, frames: EventFrames, *, train: bool = True) -> TonicFrames:
    import tonic.datasets

    folder = Path(root) / "DVSGesture" / ("ibmGestureTrain" if train else "ibmGestureTest")
    _require(
        sorted(folder.glob("user*_*/*.npy")),
        f"DVS128 Gesture not found: no {folder}/user<NN>_<lighting>/<label>.npy; "
        f"extract the {GESTURE_SOURCE} into {Path(root) / 'DVSGesture'}",
    )
    dataset = without_download(tonic.datasets.DVSGesture)(save_to=str(root), train=train, transform=frames)
    order = sorted(range(len(dataset.data)), key=lambda i: str(dataset.data[i]))
    dataset.data = [dataset.data[i] for i in order]
    dataset.targets = [dataset.targets[i] for i in order]
    return TonicFrames(dataset)
