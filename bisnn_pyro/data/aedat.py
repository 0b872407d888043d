"""jAER AEDAT 2.0 files from a DVS128 sensor (the MNIST-DVS release), read without tonic.

Header lines start with '#' (the first is '#!AER-DAT2.0'); then 8-byte records of a big-endian
uint32 address and a big-endian uint32 timestamp (1 µs).  DVS128 address bits: 0 polarity
(0 = ON), 1-7 x (mirrored), 8-14 y.  Timestamps that jump backwards (a jAER reset or a 32-bit wrap)
are made monotonic as the release's own dat2mat.m does: every later event gets the value before
the drop added (2**32 for a wrap).
"""

from __future__ import annotations

import os

import numpy as np

from ..sizing import available_bytes
from .events import DataError

RECORD = np.dtype([("address", ">u4"), ("timestamp", ">u4")])
EVENT = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
WRAP = 2**32


CHUNK = 1 << 20  # records decoded at a time: memory stays near the decoded events' own size


def _data_start(handle, path: str | os.PathLike) -> int:
    """The offset of the first record, after the '#' header lines."""
    first = handle.readline(256)
    if not first.startswith(b"#!AER-DAT"):
        raise DataError(f"{path}: not an AEDAT file (expected a first line '#!AER-DAT2.0')")
    version = first[9:].strip() if first.endswith(b"\n") else b""
    if not version.startswith(b"2."):
        raise DataError(f"{path}: AEDAT version {version.decode(errors='replace')!r}, expected 2.0")
    position = len(first)
    while True:
        line = handle.readline(1 << 16)
        if not line.startswith(b"#"):
            return position
        if not line.endswith(b"\n"):
            raise DataError(f"{path}: the header never ends (no newline after a '#' line)")
        position += len(line)


def monotonic_timestamps(timestamps: np.ndarray) -> np.ndarray:
    """int64 times that never decrease: after each backward jump, add the value before the drop
    (or 2**32 where the jump is a 32-bit wrap) to every later event."""
    t = timestamps.astype(np.int64)
    drops = np.flatnonzero(np.diff(t) < 0) + 1
    correction = np.zeros_like(t)
    for index in drops:
        before, after = t[index - 1], t[index]
        correction[index] += WRAP if before - after > WRAP // 2 else before
    return t + np.cumsum(correction)


def read_aedat2_dvs128(path: str | os.PathLike) -> np.ndarray:
    """Events of one recording: structured array (x, y, t µs from the first event, p = ON),
    decoded ``CHUNK`` records at a time."""
    try:
        with open(path, "rb") as handle:
            start = _data_start(handle, path)
            payload = os.fstat(handle.fileno()).st_size - start
            if payload % RECORD.itemsize:
                raise DataError(f"{path}: truncated: {payload} bytes of events is not a multiple of 8")
            count = payload // RECORD.itemsize
            available = available_bytes()
            if available is not None and count * EVENT.itemsize > available:
                raise DataError(
                    f"{path}: {count:,} events need {count * EVENT.itemsize / 1e9:.1f} GB, more than is available"
                )
            handle.seek(start)
            events = np.empty(count, EVENT)
            last, carried = None, 0
            for first in range(0, count, CHUNK):
                size = min(CHUNK, count - first)
                data = handle.read(size * RECORD.itemsize)
                if len(data) != size * RECORD.itemsize:
                    raise DataError(f"{path}: the file ended before its size said (it changed while read?)")
                last, carried = _decode(np.frombuffer(data, RECORD), events[first : first + size], last, carried)
    except OSError as error:
        raise DataError(f"{path}: cannot read ({error.strerror})") from None
    if count:
        events["t"] -= events["t"][0]
    return events


def _decode(records: np.ndarray, events: np.ndarray, last: int | None, carried: int) -> tuple[int, int]:
    """Decode ``records`` into ``events``; ``last`` and ``carried``: the raw timestamp before them and
    the correction it had (None, 0 at the start); returns the same for the next chunk."""
    address = records["address"].astype(np.uint32)
    events["x"] = 127 - ((address & 0xFE) >> 1)
    events["y"] = (address & 0x7F00) >> 8
    events["p"] = (address & 1) == 0
    raw = records["timestamp"].astype(np.int64)
    if last is None:
        t = monotonic_timestamps(raw)
    else:
        t = monotonic_timestamps(np.concatenate(([last], raw)))[1:] + carried
    events["t"] = t
    return int(raw[-1]), int(t[-1] - raw[-1])


def write_aedat2_dvs128(path: str | os.PathLike, x, y, p, t) -> None:
    """Write events (p: 1 = ON, t: µs, uint32) in the release's format, for tests and examples."""
    header = (
        b"#!AER-DAT2.0\r\n# This is a raw AE data file - do not edit\r\n"
        b"# Data format is int32 address, int32 timestamp (8 bytes total), repeated for each event\r\n"
        b"# Timestamps tick is 1 us\r\n"
    )
    records = np.empty(len(x), RECORD)
    records["timestamp"] = np.asarray(t, dtype=np.uint32)
    records["address"] = (
        ((127 - np.asarray(x, np.uint32)) << 1) | (np.asarray(y, np.uint32) << 8) | (1 - np.asarray(p, np.uint32))
    )
    with open(path, "wb") as handle:
        handle.write(header + records.tobytes())
