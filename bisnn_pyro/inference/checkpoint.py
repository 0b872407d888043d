"""Checkpoints: written atomically, read back with ``torch.load(weights_only=True)``, and checked.

PyTorch does not verify an archive's checksums on load, so flipped bits in a stored tensor would
load silently: a checkpoint carries a SHA-256 of its contents (tensors' bytes, dtypes and shapes,
and every plain value), verified on load.  A file holding anything but tensors and plain values
is never unpickled (it could run code) and is refused.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import secrets
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError, one_line

FORMAT = "bisnn-pyro-checkpoint-2"
FORMATS = ("bisnn-pyro-checkpoint-1", FORMAT)  # version 1 (bisnn-pyro 0.1) carries no checksum
TEMPORARY = ".{name}.*.tmp"  # an unfinished write (a killed process leaves it behind)


def checksum(value: Any) -> str:
    """SHA-256 over ``value``'s nested dicts, lists, tensors (dtype, shape, bytes) and plain values."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        data = value.detach().cpu().contiguous()
        digest.update(f"T{data.dtype}{tuple(data.shape)}".encode())
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)}".encode())
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"L{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(f"V{value!r}".encode())


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain Python values) and its checksum to ``path`` via a
    temporary file (made with the permissions the user's umask gives) and an atomic rename, so an
    interrupted save never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / TEMPORARY.format(name=path.name).replace("*", secrets.token_hex(4))
    payload = {"format": FORMAT, **state}
    payload["checksum"] = checksum(payload)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def remove_unfinished_writes(path: str | os.PathLike) -> list[Path]:
    """Delete the temporary files that killed writes of checkpoint ``path`` left; the paths removed.
    (Call it only while holding the run folder's lock: a live writer's file looks the same.)"""
    path = Path(path)
    stale = list(path.parent.glob(TEMPORARY.format(name=path.name)))
    for file in stale:
        file.unlink(missing_ok=True)
    return stale


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely; a missing, corrupted, unsafe or foreign file raises ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        if "weights only" in str(error).lower() or "weights_only" in str(error):
            raise CheckpointError(
                f"{path} was not loaded: it holds objects other than tensors and plain values, which could run "
                "code when unpickled (a bisnn-pyro checkpoint never does)"
            ) from None
        raise CheckpointError(f"corrupted checkpoint {path}: {one_line(error)}") from None
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(f"corrupted checkpoint {path}: {one_line(error)}") from None
    if not isinstance(state, dict) or state.get("format") not in FORMATS:
        raise CheckpointError(f"{path} is not a bisnn-pyro checkpoint (expected format {FORMAT})")
    if state["format"] != FORMATS[0] or "checksum" in state:  # a version-1 mark on a checksummed file is damage
        stored = state.pop("checksum", None)
        if stored != checksum(state):
            raise CheckpointError(f"corrupted checkpoint {path}: its contents do not match their checksum")
    return state

