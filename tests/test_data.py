import numpy as np
import pytest
import torch
from event_files import nmnist_bytes

from bisnn_pyro.cli import main
from bisnn_pyro.data.aedat import monotonic_timestamps, read_aedat2_dvs128, write_aedat2_dvs128
from bisnn_pyro.data.digits_dvs import (
    crossing_counts,
    digits_dvs,
    events_from_counts,
    frames_from_counts,
)
from bisnn_pyro.data.events import DataError, EventFrames
from bisnn_pyro.data.mnist_dvs import MNISTDVS, find_files, split_files
from bisnn_pyro.data.tonic_sets import dvs_gesture, nmnist

EV = [("x", "<i8"), ("y", "<i8"), ("t", "<i8"), ("p", "<i8")]


def events(x, y, t, p):
    out = np.zeros(len(x), dtype=EV)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


# --- AEDAT 2.0 -----------------------------------------------------------------------------


def test_aedat_roundtrip_with_jaer_bit_layout(tmp_path):
    path = tmp_path / "a.aedat"
    write_aedat2_dvs128(path, [0, 127, 5, 64], [0, 127, 9, 100], [1, 0, 1, 0], [1000, 2000, 2500, 2500])
    ev = read_aedat2_dvs128(path)
    assert ev["x"].tolist() == [0, 127, 5, 64] and ev["y"].tolist() == [0, 127, 9, 100]
    assert ev["p"].tolist() == [True, False, True, False]
    assert ev["t"].tolist() == [0, 1000, 1500, 1500]
    raw = path.read_bytes()
    start = raw.index(b"1 us\r\n") + 6
    address = int.from_bytes(raw[start : start + 4], "big")
    assert address & 1 == 0 and (address & 0xFE) >> 1 == 127  # ON is bit 0 = 0; x is mirrored


def test_timestamps_made_monotonic_across_reset_and_wrap():
    t = monotonic_timestamps(np.array([10, 20, 5, 7, 2**32 - 3, 4], dtype=np.uint32))
    assert np.all(np.diff(t) >= 0)
    assert t.tolist() == [10, 20, 25, 27, 2**32 - 3 + 20, 4 + 20 + 2**32]


def test_header_only_file_has_no_events(tmp_path):
    path = tmp_path / "empty.aedat"
    write_aedat2_dvs128(path, [], [], [], [])
    assert len(read_aedat2_dvs128(path)) == 0


@pytest.mark.parametrize(
    "content, message",
    [
        (b"hello world", "not an AEDAT file"),
        (b"#!AER-DAT3.1\r\n", "version"),
        (b"#!AER-DAT2.0\r\n" + b"\x00" * 13, "truncated"),
    ],
)
def test_bad_aedat_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.aedat"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_aedat2_dvs128(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# --- binning --------------------------------------------------------------------------------


def test_frames_have_a_fixed_number_of_steps():
    binning = EventFrames((4, 4, 2), steps=3, step_us=1000)
    short = binning(events([1], [2], [5], [1]))
    long = binning(events([0, 1, 1, 3, 3], [0, 0, 0, 2, 3], [100, 150, 160, 1200, 9999], [1, 0, 0, 1, 1]))
    assert short.shape == long.shape == (3, 2, 4, 4)
    assert long.max() == 1.0  # two events in one pixel and step still make one spike
    assert long[0, 0, 0, 1] == 1 and long[1, 1, 2, 3] == 1 and long.sum() == 3  # the 9.9 ms event is dropped
    assert binning(np.zeros(0, dtype=EV)).shape == (3, 2, 4, 4)


def test_unsorted_events_are_sorted_and_crop_downsample():
    binning = EventFrames((8, 8, 2), steps=2, step_us=10, crop=(4, 4), downsample=2)
    assert binning.shape == (2, 2, 2, 2)
    frames = binning(events([2, 5, 0], [2, 5, 0], [15, 0, 3], [1, 1, 1]))  # (0, 0) is outside the crop
    assert frames[0, 1, 1, 1] == 1 and frames[1, 1, 0, 0] == 1 and frames.sum() == 2


def test_bad_binning_parameters():
    with pytest.raises(ValueError, match="steps"):
        EventFrames((4, 4, 2), steps=0, step_us=10)
    with pytest.raises(ValueError, match="crop"):
        EventFrames((4, 4, 2), steps=2, step_us=10, crop=(5, 2))


# --- MNIST-DVS folder tree ------------------------------------------------------------------


def mnist_dvs_tree(root, per_digit=5, digits=(3, 7)):
    rng = np.random.default_rng(0)
    for digit in digits:
        folder = root / f"grabbed_data{digit}" / "scale4"
        folder.mkdir(parents=True)
        for i in range(1, per_digit + 1):
            n = 50
            write_aedat2_dvs128(
                folder / f"mnist_{digit}_scale04_{i:04d}.aedat",
                rng.integers(0, 128, n),
                rng.integers(0, 128, n),
                rng.integers(0, 2, n),
                np.sort(rng.integers(10**6, 10**6 + 200_000, n)),
            )


def test_mnist_dvs_labels_split_and_frames(tmp_path):
    mnist_dvs_tree(tmp_path)
    files = find_files(tmp_path, scale=4)
    assert len(files) == 10 and {d for _, d in files} == {3, 7}
    train, test = split_files(files, test_fraction=0.2, seed=1)
    assert len(test) == 2 and sorted(d for _, d in test) == [3, 7]  # stratified
    assert not set(train) & set(test)
    assert split_files(files, 0.2, seed=1) == (train, test)  # seeded
    binning = EventFrames((128, 128, 2), steps=10, step_us=20_000, downsample=4)
    dataset = MNISTDVS(tmp_path, binning, train=False, seed=1)
    frames, label = dataset[0]
    assert frames.shape == (10, 2, 32, 32) and label in (3, 7) and frames.sum() > 0


def test_mnist_dvs_missing_and_misnamed(tmp_path):
    with pytest.raises(DataError, match="grabbed_data<digit>/scale4"):
        find_files(tmp_path)
    folder = tmp_path / "grabbed_data2" / "scale4"
    folder.mkdir(parents=True)
    (folder / "digit.aedat").write_bytes(b"")
    with pytest.raises(DataError, match="mnist_2_scale04_0001"):
        find_files(tmp_path)


# --- tonic sets (no download) ---------------------------------------------------------------


def test_nmnist_through_tonic_without_download(tmp_path, monkeypatch):
    import tonic.datasets

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", lambda self: pytest.fail("tried to download"))
    for digit, name in ((3, "00001.bin"), (7, "00002.bin")):
        folder = tmp_path / "NMNIST" / "Train" / str(digit)
        folder.mkdir(parents=True)
        (folder / name).write_bytes(nmnist_bytes([1, 5, 33], [2, 6, 33], [1, 0, 1], [100, 20_000, 90_000]))
    dataset = nmnist(tmp_path, EventFrames((34, 34, 2), steps=5, step_us=20_000))
    assert len(dataset) == 2
    frames, label = dataset[1]
    assert frames.shape == (5, 2, 34, 34) and label == 7
    assert frames[0, 1, 2, 1] == 1 and frames[0, 0, 6, 5] == 1 and frames[4, 1, 33, 33] == 1
    with pytest.raises(DataError, match="N-MNIST not found"):
        nmnist(tmp_path, EventFrames((34, 34, 2), steps=5, step_us=20_000), train=False)


def test_dvs_gesture_through_tonic_sorted(tmp_path, monkeypatch):
    import tonic.datasets

    monkeypatch.setattr(tonic.datasets.DVSGesture, "download", lambda self: pytest.fail("tried to download"))
    for user, label in (("user02_led", 4), ("user01_fluorescent", 9), ("user01_fluorescent", 0)):
        folder = tmp_path / "DVSGesture" / "ibmGestureTrain" / user
        folder.mkdir(parents=True, exist_ok=True)
        data = np.array([[10, 20, 1, 0.0], [11, 21, 0, 30.0], [127, 127, 1, 59.0]], dtype=np.float64)  # t in ms
        np.save(folder / f"{label}.npy", data)
    dataset = dvs_gesture(tmp_path, EventFrames((128, 128, 2), steps=3, step_us=20_000, downsample=4))
    assert [dataset[i][1] for i in range(3)] == [0, 9, 4]  # sorted by path
    frames, _ = dataset[0]
    assert frames.shape == (3, 2, 32, 32) and frames[0, 1, 5, 2] == 1 and frames[2, 1, 31, 31] == 1


# --- the offline digits set -----------------------------------------------------------------


def test_digits_dvs_is_seeded_stratified_and_binned_like_its_events():
    train, test = digits_dvs(steps=10, duration_us=50_000, seed=3)
    assert train.x.shape[1:] == (10, 2, 12, 12) and len(train.y) + len(test.y) == 1797
    assert set(train.x.unique().tolist()) <= {0.0, 1.0} and 0.01 < train.x.mean() < 0.5
    assert (test.y.bincount(minlength=10) >= 30).all()
    again, _ = digits_dvs(steps=10, duration_us=50_000, seed=3)
    assert torch.equal(train.x, again.x)
    rng = np.random.default_rng(0)
    log_intensity = np.log(rng.uniform(0.05, 1, (2, 40, 12, 12)) + 0.1)
    counts = crossing_counts(log_intensity, 0.15)
    direct = frames_from_counts(counts, steps=8)
    binning = EventFrames((12, 12, 2), steps=8, step_us=5 * 1000, align_start=False)
    for n in range(2):
        torch.testing.assert_close(direct[n], binning(events_from_counts(counts[n], sample_us=1000)))


def test_datasets_command_and_missing_data(tmp_path, capsys):
    assert main(["datasets"]) == 0
    listing = capsys.readouterr().out
    for name in ("two-moons", "digits-dvs", "mnist-dvs", "dvs-gesture", "n-mnist"):
        assert name in listing
    code = main(["train", "--dataset", "n-mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "N-MNIST not found" in err and err.strip().count("\n") == 0
