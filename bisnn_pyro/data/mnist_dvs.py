"""MNIST-DVS (Serrano-Gotarredona & Linares-Barranco 2015): DVS128 recordings of moving digits.

Expected layout, as the public release's ten zips extract (grabbed_data0.zip ... grabbed_data9.zip):

    ROOT/grabbed_data{d}/scale{4,8,16}/mnist_{d}_scale{04,08,16}_{NNNN}.aedat

The release has no train/test split; ``split_files`` makes a seeded, stratified one: within
each digit the files are shuffled with ``seed`` and the first ``test_fraction`` go to the test set.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from .aedat import read_aedat2_dvs128
from .events import DataError, EventFrames
from .splits import stratified_test_mask

SCALES = (4, 8, 16)
SENSOR_SIZE = (128, 128, 2)
SOURCE = "IMSE-CNM MNIST-DVS release (grabbed_data0-9.zip), http://www2.imse-cnm.csic.es/caviar/MNISTDVS.html"
_NAME = re.compile(r"mnist_(\d)_scale(\d\d)_(\d+)\.aedat$")


def find_files(root: str | Path, scale: int = 4) -> list[tuple[Path, int]]:
    """(path, digit) of every recording at ``scale``, sorted; a one-line error if there are none."""
    if scale not in SCALES:
        raise DataError(f"MNIST-DVS scale must be one of {SCALES}, got {scale}")
    root = Path(root)
    files = []
    for digit in range(10):
        for path in sorted((root / f"grabbed_data{digit}" / f"scale{scale}").glob("*.aedat")):
            match = _NAME.search(path.name)
            if match is None or int(match.group(1)) != digit or int(match.group(2)) != scale:
                raise DataError(f"{path}: expected a name like mnist_{digit}_scale{scale:02d}_0001.aedat")
            files.append((path, digit))
    if not files:
        raise DataError(
            f"MNIST-DVS not found: no {root}/grabbed_data<digit>/scale{scale}/*.aedat; unzip the {SOURCE} into {root}"
        )
    return files


def split_files(files: list[tuple[Path, int]], test_fraction: float = 0.2, seed: int = 0):
    """Stratified seeded split: (train files, test files)."""
    test = stratified_test_mask(np.array([digit for _, digit in files]), test_fraction, np.random.default_rng(seed))
    return [f for f, t in zip(files, test) if not t], [f for f, t in zip(files, test) if t]


class MNISTDVS(Dataset):
    """(frames (T, 2, H, W), digit) per recording of one split."""

    def __init__(
        self,
        root: str | Path,
        frames: EventFrames,
        *,
        train: bool = True,
        scale: int = 4,
        test_fraction: float = 0.2,
        seed: int = 0,
    ):
        train_files, test_files = split_files(find_files(root, scale), test_fraction, seed)
        self.files = train_files if train else test_files
        self.frames = frames

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        path, digit = self.files[index]
        return self.frames(read_aedat2_dvs128(path)), digit
