"""Seeded fuzzing of the data readers: damaged N-MNIST, DVS Gesture and AEDAT files (truncated,
bytes flipped or inserted, wrong shapes and values, labels out of range) either read as frames of
the expected shape or raise DataError naming the file; nothing else escapes, and none takes
over 5 seconds."""

import time

import numpy as np
import pytest
import tonic.datasets
from event_files import nmnist_bytes

from bisnn_pyro.data import aedat
from bisnn_pyro.data.aedat import read_aedat2_dvs128, write_aedat2_dvs128
from bisnn_pyro.data.events import DataError, EventFrames
from bisnn_pyro.data.tonic_sets import dvs_gesture, nmnist

CASES = 200
SECONDS = 5.0


def damaged(data: bytes, rng: np.random.Generator) -> bytes:
    """One of: truncated, bytes flipped, bytes inserted, bytes deleted, or a random tail."""
    data = bytearray(data)
    kind = rng.integers(5)
    if kind == 0 and len(data) > 1:
        return bytes(data[: rng.integers(len(data))])
    if kind == 1:
        for _ in range(rng.integers(1, 9)):
            position = rng.integers(len(data))
            data[position] ^= 1 << rng.integers(8)
        return bytes(data)
    if kind == 2:
        position = rng.integers(len(data) + 1)
        return bytes(data[:position] + rng.bytes(rng.integers(1, 40)) + data[position:])
    if kind == 3 and len(data) > 1:
        start = rng.integers(len(data))
        return bytes(data[:start] + data[start + rng.integers(1, 20) :])
    return bytes(data) + rng.bytes(rng.integers(1, 64))


def expect_frames_or_data_error(read, shape):
    start = time.perf_counter()
    try:
        frames, label = read()
    except DataError as error:
        assert str(error).count("\n") == 0
    else:
        assert tuple(frames.shape) == shape and ((frames == 0) | (frames == 1)).all()
    assert time.perf_counter() - start < SECONDS


def test_nmnist_reader_fuzzed(tmp_path, monkeypatch):
    monkeypatch.setattr(tonic.datasets.NMNIST, "download", lambda self: pytest.fail("tried to download"))
    rng = np.random.default_rng(0)
    folder = tmp_path / "NMNIST" / "Train" / "3"
    folder.mkdir(parents=True)
    n = 50
    intact = nmnist_bytes(
        rng.integers(0, 34, n), rng.integers(0, 34, n), rng.integers(0, 2, n), np.sort(rng.integers(0, 90_000, n))
    )
    file = folder / "00001.bin"
    file.write_bytes(intact)
    frames = EventFrames((34, 34, 2), steps=5, step_us=20_000)
    dataset = nmnist(tmp_path, frames)
    for _ in range(CASES):
        # N-MNIST coordinates are bytes: values past 33 are off the 34x34 sensor
        data = damaged(intact, rng) if rng.random() < 0.8 else nmnist_bytes([40], [2], [1], [5])
        file.write_bytes(data)
        expect_frames_or_data_error(lambda: dataset[0], frames.shape)


def test_dvs_gesture_reader_fuzzed(tmp_path, monkeypatch):
    monkeypatch.setattr(tonic.datasets.DVSGesture, "download", lambda self: pytest.fail("tried to download"))
    rng = np.random.default_rng(1)
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    folder.mkdir(parents=True)
    n = 40
    good = np.stack(
        [rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n), np.sort(rng.uniform(0, 59, n))], 1
    )
    file = folder / "4.npy"
    np.save(file, good)
    intact = file.read_bytes()
    frames = EventFrames((128, 128, 2), steps=3, step_us=20_000, downsample=4)
    dataset = dvs_gesture(tmp_path, frames)
    wrong_values = [
        good[:, :3],  # a column missing
        good.ravel(),  # one dimension
        np.where(np.arange(4) == 0, -5.0, good),  # x below the sensor (would wrap to the other edge)
        np.where(np.arange(4) == 1, 200.0, good),  # y past it
        np.where(np.arange(4) == 3, np.nan, good),  # times that are not numbers
        np.where(np.arange(4) == 3, -1.0, good),  # negative times
        np.array(["a", "b"]),  # not numbers at all
    ]
    for case in range(CASES):
        if case % 4 == 3:
            np.save(file, wrong_values[rng.integers(len(wrong_values))])
        else:
            file.write_bytes(damaged(intact, rng))
        expect_frames_or_data_error(lambda: dataset[0], frames.shape)


def test_dvs_gesture_label_out_of_range(tmp_path):
    folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / "user01_led"
    folder.mkdir(parents=True)
    np.save(folder / "99.npy", np.array([[1.0, 2.0, 1.0, 3.0]]))
    dataset = dvs_gesture(tmp_path, EventFrames((128, 128, 2), steps=3, step_us=20_000, downsample=4))
    with pytest.raises(DataError, match="label 99 is not one of the 11 classes"):
        dataset[0]


def test_aedat_reader_fuzzed(tmp_path):
    rng = np.random.default_rng(2)
    n = 60
    path = tmp_path / "rec.aedat"
    write_aedat2_dvs128(
        path, rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
        np.sort(rng.integers(0, 10**6, n)),
    )
    intact = path.read_bytes()
    frames = EventFrames((128, 128, 2), steps=4, step_us=10_000, downsample=4)
    for _ in range(CASES):
        path.write_bytes(damaged(intact, rng))
        expect_frames_or_data_error(lambda: (frames(read_aedat2_dvs128(path)), 0), frames.shape)


def test_aedat_decoded_in_chunks_equals_decoded_at_once(tmp_path, monkeypatch):
    """Timestamps stay monotonic across chunk boundaries, through a reset and a 32-bit wrap."""
    t = [5, 9, 2**32 - 10, 3, 7, 1, 4, 8, 2, 6]
    path = tmp_path / "rec.aedat"
    write_aedat2_dvs128(path, list(range(10)), list(range(10)), [1, 0] * 5, t)
    whole = read_aedat2_dvs128(path)
    monkeypatch.setattr(aedat, "CHUNK", 3)
    chunked = read_aedat2_dvs128(path)
    assert np.array_equal(whole, chunked) and (np.diff(chunked["t"]) >= 0).all()


def test_aedat_claiming_more_events_than_memory_holds_is_refused(tmp_path, monkeypatch):
    path = tmp_path / "huge.aedat"
    write_aedat2_dvs128(path, [1], [1], [1], [0])
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size + 8 * 10**8)  # sparse: 10^8 records of zeros
    monkeypatch.setattr(aedat, "available_bytes", lambda: 10**9)
    start = time.perf_counter()
    with pytest.raises(DataError, match="100,000,001 events need 1.3 GB"):
        read_aedat2_dvs128(path)
    assert time.perf_counter() - start < 1.0
