"""Every data set by name: where it comes from, its shapes, whether it is present, how to load it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .digits_dvs import DIGITS, SENSOR, digits_dvs
from .events import DataError, EventFrames
from .mnist_dvs import MNISTDVS, find_files
from .mnist_dvs import SENSOR_SIZE as DVS128
from .mnist_dvs import SOURCE as MNIST_DVS_SOURCE
from .tonic_sets import GESTURE_CLASSES, GESTURE_SOURCE, NMNIST_CLASSES, NMNIST_SOURCE, dvs_gesture, nmnist
from .two_moons import NEURONS as MOONS_NEURONS
from .two_moons import two_moons


@dataclass(frozen=True)
class DatasetSpec:
    """Facts about a data set; event sets bin ``steps`` steps of ``step_ms`` each (defaults)."""

    name: str
    classes: int
    steps: int
    burn_in: int
    source: str
    size: str
    step_ms: float | None = None
    sensor: tuple[int, int, int] | None = None  # (W, H, P) before down-sampling
    downsample: int = 1
    folder: str | None = None  # relative to --data-dir; None: needs no files
    layout: str = ""  # where the files go, for messages
    pattern: str = "**/*.*"  # a file that shows the set is present, relative to folder
    time_constants: tuple[float, float, float] = (10.0, 6.0, 2.0)  # default LIF tau_mem, tau_syn, tau_ref (steps)
    readout_gain: float = 1.0  # default scale of the readout logits
    features: tuple[int, ...] | None = None  # a frame's shape where there is no sensor
    sequences: int | None = None  # recordings of a set generated in memory (None: as configured)
    uses: tuple[str, ...] = ("steps", "burn_in", "step_ms", "downsample", "data_dir")  # its [data] options

    def frame_shape(self, downsample: int | None = None) -> tuple[int, ...]:
        """The shape of one step's input: (P, H, W) after down-sampling, or ``features``."""
        if self.sensor is None:
            return self.features
        width, height, polarities = self.sensor
        factor = downsample or self.downsample
        return polarities, height // factor, width // factor

    def frames(self, steps: int, step_ms: float | None, downsample: int | None) -> EventFrames:
        return EventFrames(self.sensor, steps, 1000.0 * (step_ms or self.step_ms), downsample or self.downsample)

    def present(self, data_dir: str | Path | None) -> bool:
        if self.folder is None:
            return True
        if data_dir is None:
            return False
        return any((Path(data_dir) / self.folder).glob(self.pattern))


SPECS = {
    "two-moons": DatasetSpec(
        "two-moons",
        2,
        100,
        10,
        "generated (seeded), BiSNN paper's toy task",
        "200 train / 1,000 test",
        features=(2 * MOONS_NEURONS,),
        uses=("steps", "burn_in", "train_size", "test_size", "data_seed"),
    ),
    "digits-dvs": DatasetSpec(
        "digits-dvs",
        10,
        20,
        3,
        "scikit-learn's bundled 8x8 digits through a simulated DVS (no download)",
        "1,438 train / 359 test",
        step_ms=5.0,
        sensor=(SENSOR, SENSOR, 2),
        time_constants=(4.0, 2.0, 2.0),
        readout_gain=4.0,
        sequences=DIGITS,
        uses=("steps", "burn_in", "step_ms", "data_seed"),
    ),
    "mnist-dvs": DatasetSpec(
        "mnist-dvs",
        10,
        50,
        5,
        MNIST_DVS_SOURCE,
        "10,000 digits x 3 scales; seeded 80/20 split",
        step_ms=10.0,
        sensor=DVS128,
        downsample=4,
        folder=".",
        pattern="grabbed_data*/scale*/*.aedat",
        uses=("steps", "burn_in", "step_ms", "downsample", "data_dir", "data_seed"),
    ),
    "dvs-gesture": DatasetSpec(
        "dvs-gesture",
        GESTURE_CLASSES,
        60,
        5,
        GESTURE_SOURCE,
        "1,077 train / 264 test",
        step_ms=25.0,
        sensor=DVS128,
        downsample=4,
        folder="DVSGesture",
    ),
    "n-mnist": DatasetSpec(
        "n-mnist",
        NMNIST_CLASSES,
        30,
        3,
        NMNIST_SOURCE,
        "60,000 train / 10,000 test",
        step_ms=10.0,
        sensor=(34, 34, 2),
        folder="NMNIST",
        layout="DATA_DIR/NMNIST/{Train,Test}/<digit>/<id>.bin",
    ),
}
DATASETS = tuple(SPECS)


def load_dataset(
    name: str,
    *,
    steps: int,
    data_dir: str | Path | None = None,
    step_ms: float | None = None,
    downsample: int | None = None,
    seed: int = 0,
    train_size: int = 200,
    test_size: int = 1000,
    scale: int = 4,
):
    """(train, test): in-memory ``SpikeDataset``s for the generated sets, lazily read
    ``Dataset``s of (frames (T, P, H, W), label) for the recorded ones."""
    if name not in SPECS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    spec = SPECS[name]
    if name == "two-moons":
        return two_moons(train_size, steps, seed=2 * seed), two_moons(test_size, steps, seed=2 * seed + 1)
    if name == "digits-dvs":
        return digits_dvs(steps, int(round(steps * 1000 * (step_ms or spec.step_ms))), seed=seed)
    if data_dir is None:
        raise DataError(f"{name} is read from files: pass --data-dir (it expects {spec.source})")
    frames = spec.frames(steps, step_ms, downsample)
    if name == "mnist-dvs":
        find_files(data_dir, scale)
        return tuple(MNISTDVS(data_dir, frames, train=t, scale=scale, seed=seed) for t in (True, False))
    loader = nmnist if name == "n-mnist" else dvs_gesture
    return loader(data_dir, frames, train=True), loader(data_dir, frames, train=False)
