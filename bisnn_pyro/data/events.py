"""Event streams to binary spike frames with a fixed number of time steps.

Events are a numpy structured array with fields x, y, t (µs) and p, sorted by t.  Binning uses
``tonic.transforms.ToFrame`` with an explicit start and end time, so every recording gives the
same T; counts are clipped to 1 (a pixel spikes or not in a step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..adapters.tonic_internals import tonic_module
from ..errors import DataError

EVENT_FIELDS = ("x", "y", "t", "p")


def check_events(events: np.ndarray, sensor_size: tuple[int, int, int], where: str) -> None:
    """Raise ``DataError`` naming ``where`` unless ``events`` is a structured array with
    fields x, y, t, p whose coordinates lie on the sensor (W, H, P) and whose times are finite
    and >= 0."""
    names = getattr(getattr(events, "dtype", None), "names", None) or ()
    if not isinstance(events, np.ndarray) or events.ndim != 1 or not set(EVENT_FIELDS) <= set(names):
        raise DataError(f"{where}: expected a list of events with fields x, y, t, p, got {type(events).__name__}")
    if len(events) == 0:
        return
    for field, size in zip(("x", "y", "p"), sensor_size):
        values = events[field]
        low, high = values.min(), values.max()
        if not (np.isfinite(low) and np.isfinite(high) and low >= 0 and high < size):
            raise DataError(f"{where}: event {field} ranges over [{low}, {high}], off the sensor's [0, {size})")
    t = events["t"]
    if not (np.isfinite(t.min()) and np.isfinite(t.max()) and t.min() >= 0):
        raise DataError(f"{where}: event times range over [{t.min()}, {t.max()}], expected finite times >= 0")


@dataclass(frozen=True)
class EventFrames:
    """Callable: events -> spike frames (T, polarities, H, W) as a float tensor in {0, 1}.

    ``sensor_size`` is tonic's (W, H, P).  The recording's first event is time 0 (with
    ``align_start=False``, time 0 itself); the frames cover ``steps`` bins of ``step_us``
    microseconds and later events are dropped.  ``crop`` keeps a
    centred (W, H) window, then ``downsample`` divides coordinates by an integer factor.
    """

    sensor_size: tuple[int, int, int]
    steps: int
    step_us: float
    downsample: int = 1
    crop: tuple[int, int] | None = None
    align_start: bool = True

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"number of time steps must be >= 1, got {self.steps}")
        if not self.step_us > 0:
            raise ValueError(f"time step must be > 0 µs, got {self.step_us}")
        if self.downsample < 1:
            raise ValueError(f"downsample factor must be >= 1, got {self.downsample}")
        width, height, _ = self.sensor_size
        if self.crop is not None and not (0 < self.crop[0] <= width and 0 < self.crop[1] <= height):
            raise ValueError(f"crop {self.crop} does not fit the sensor {width}x{height}")

    @property
    def output_size(self) -> tuple[int, int, int]:
        """(W, H, P) after cropping and down-sampling."""
        width, height, polarities = self.sensor_size
        if self.crop is not None:
            width, height = self.crop
        return -(-width // self.downsample), -(-height // self.downsample), polarities

    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(T, P, H, W) of the frames."""
        width, height, polarities = self.output_size
        return self.steps, polarities, height, width

    def __call__(self, events: np.ndarray) -> torch.Tensor:
        if len(events) == 0:
            return torch.zeros(self.shape)
        x = events["x"].astype(np.int64)
        y = events["y"].astype(np.int64)
        t = events["t"].astype(np.int64)
        if np.any(np.diff(t) < 0):
            order = np.argsort(t, kind="stable")
            x, y, t, p = x[order], y[order], t[order], events["p"][order]
        else:
            p = events["p"]
        if self.crop is not None:
            width, height, _ = self.sensor_size
            x0, y0 = (width - self.crop[0]) // 2, (height - self.crop[1]) // 2
            x, y = x - x0, y - y0
            inside = (x >= 0) & (x < self.crop[0]) & (y >= 0) & (y < self.crop[1])
            x, y, t, p = x[inside], y[inside], t[inside], p[inside]
        binned = np.zeros(len(x), dtype=[("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])
        binned["x"], binned["y"], binned["p"] = x // self.downsample, y // self.downsample, p
        binned["t"] = t - (t[0] if len(t) and self.align_start else 0)
        if len(binned) == 0:
            return torch.zeros(self.shape)
        to_frame = tonic_module("transforms").ToFrame(
            sensor_size=self.output_size,
            time_window=self.step_us,
            start_time=0,
            end_time=self.steps * self.step_us,
        )
        frames = to_frame(binned)[: self.steps]
        return torch.from_numpy(np.minimum(frames, 1).astype(np.float32))
