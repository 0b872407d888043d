"""An offline event-camera digits set: scikit-learn's bundled 8x8 digits seen by a simulated DVS.

Each 8x8 image (1,797 of them, shipped inside scikit-learn, so nothing is downloaded) is placed in
the middle of a 12x12 sensor and moved along three straight saccades forming a closed triangle of
side ``amplitude`` pixels, like the N-MNIST recordings, the triangle rotated at random per image.
The sensor samples the bilinearly shifted image every ``sample_us`` microseconds; a pixel emits an
ON (OFF) event each time its log intensity rises (falls) by ``threshold`` since its last event,
with Gaussian noise on the log intensity.  Frames bin those events into ``steps`` steps from time
0, a pixel spiking in a step if it had any event of that polarity.  One seeded generator draws
everything; the train/test split is seeded and stratified by digit.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .splits import stratified_test_mask
from .two_moons import SpikeDataset

SENSOR = 12  # pixels per side
DIGITS = 1797  # images in scikit-learn's digits
PAD = (SENSOR - 8) // 2
EVENT_DTYPE = np.dtype([("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")])


def load_digit_images() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8x8 digits as intensities in [0, 1] and their labels (no download)."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def saccade_paths(samples: int, amplitude: float, angles: np.ndarray) -> np.ndarray:
    """(len(angles), samples, 2) displacements along closed triangles rotated by ``angles``."""
    corners = np.array([[0.0, 0.0], [amplitude, 0.0], [amplitude / 2, amplitude * math.sqrt(3) / 2], [0.0, 0.0]])
    corners -= corners[:3].mean(0)
    position = np.linspace(0, 3, samples, endpoint=False)
    leg = position.astype(int)
    fraction = (position - leg)[:, None]
    path = corners[leg] * (1 - fraction) + corners[leg + 1] * fraction  # (samples, 2)
    cos, sin = np.cos(angles)[:, None], np.sin(angles)[:, None]
    return np.stack([cos * path[:, 0] - sin * path[:, 1], sin * path[:, 0] + cos * path[:, 1]], -1)


def shifted_images(images: np.ndarray, paths: np.ndarray) -> np.ndarray:
    """Padded images bilinearly shifted by each displacement: (N, samples, SENSOR, SENSOR)."""
    n, samples = paths.shape[:2]
    canvas = torch.zeros(n, 1, SENSOR, SENSOR)
    canvas[:, 0, PAD : PAD + 8, PAD : PAD + 8] = torch.from_numpy(images)
    theta = torch.zeros(n * samples, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -torch.from_numpy(paths).float().reshape(-1, 2) * (2.0 / SENSOR)
    grid = torch.nn.functional.affine_grid(theta, (n * samples, 1, SENSOR, SENSOR), align_corners=False)
    source = canvas.repeat_interleave(samples, dim=0)
    moved = torch.nn.functional.grid_sample(source, grid, align_corners=False)
    return moved.reshape(n, samples, SENSOR, SENSOR).numpy()


def crossing_counts(log_intensity: np.ndarray, threshold: float) -> np.ndarray:
    """Signed events per pixel and sample (N, samples, H, W): +k for k ON events, -k for OFF."""
    counts = np.zeros(log_intensity.shape, dtype=np.int16)
    reference = log_intensity[:, 0].copy()
    for k in range(1, log_intensity.shape[1]):
        crossings = np.trunc((log_intensity[:, k] - reference) / threshold)
        counts[:, k] = crossings
        reference += crossings * threshold
    return counts


def events_from_counts(counts: np.ndarray, sample_us: int) -> np.ndarray:
    """The event stream (x, y, t, p) of one recording's signed counts (samples, H, W)."""
    k, ys, xs = np.nonzero(counts)
    repeats = np.abs(counts[k, ys, xs]).astype(np.int64)
    events = np.empty(int(repeats.sum()), EVENT_DTYPE)
    events["x"], events["y"] = np.repeat(xs, repeats), np.repeat(ys, repeats)
    events["t"] = np.repeat(k, repeats) * sample_us
    events["p"] = np.repeat(counts[k, ys, xs] > 0, repeats)
    return events


def frames_from_counts(counts: np.ndarray, steps: int) -> torch.Tensor:
    """Binary frames (N, steps, 2, H, W) (polarity 0 = OFF, 1 = ON) binning samples evenly."""
    n, samples, height, width = counts.shape
    if samples % steps:
        raise ValueError(f"{samples} sensor samples do not split into {steps} equal steps")
    grouped = counts.reshape(n, steps, samples // steps, height, width)
    on, off = (grouped > 0).any(2), (grouped < 0).any(2)
    return torch.from_numpy(np.stack([off, on], axis=2).astype(np.float32))


def digits_dvs(
    steps: int = 20,
    duration_us: int = 100_000,
    *,
    seed: int = 0,
    amplitude: float = 1.5,
    threshold: float = 0.15,
    noise: float = 0.03,
    sample_us: int = 1000,
    test_fraction: float = 0.2,
) -> tuple[SpikeDataset, SpikeDataset]:
    """(train, test) spike frames (N, T, 2, 12, 12) with labels; ``points`` holds the 8x8 images."""
    images, labels = load_digit_images()
    rng = np.random.default_rng(seed)
    samples = duration_us // sample_us
    paths = saccade_paths(samples, amplitude, rng.uniform(0, 2 * math.pi, len(images)))
    intensity = shifted_images(images, paths)
    log_intensity = np.log(intensity + 0.1) + noise * rng.standard_normal(intensity.shape)
    frames = frames_from_counts(crossing_counts(log_intensity, threshold), steps)
    test = stratified_test_mask(labels, test_fraction, rng)
    y, points, split = torch.from_numpy(labels), torch.from_numpy(images), torch.from_numpy(test)
    return (
        SpikeDataset(frames[~split], y[~split], points[~split]),
        SpikeDataset(frames[split], y[split], points[split]),
    )
