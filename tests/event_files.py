"""Event files written for the tests, in the formats the readers take."""

import numpy as np


def nmnist_bytes(x, y, p, t) -> bytes:
    """N-MNIST's 40-bit events: x, y, then polarity and a 23-bit time in microseconds."""
    b = np.empty((len(x), 5), np.uint8)
    t = np.asarray(t, np.uint32)
    b[:, 0], b[:, 1] = x, y
    b[:, 2] = (np.asarray(p, np.uint32) << 7) | (t >> 16) & 0x7F
    b[:, 3], b[:, 4] = (t >> 8) & 0xFF, t & 0xFF
    return b.tobytes()
