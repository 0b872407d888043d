"""An exclusive lock on a run folder for the one process that writes it (``train``, ``--resume``).

Readers (``evaluate``, ``report``) never take it: the checkpoint they read is replaced atomically.
The lock is ``fcntl.flock`` on ``<run>/.lock``, released when the process ends however it ends;
the file holds the writer's process id, which a second writer is told.  (Where ``fcntl`` does not
exist, on Windows, writers are not locked.)
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import RunFolderBusy

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"


class RunLock:
    """Holds ``directory``'s writer lock from creation until ``release`` (or the process's end);
    raises ``RunFolderBusy`` naming the process that holds it."""

    def __init__(self, directory: str | Path):
        self.path = Path(directory) / LOCK_FILE
        self.fd: int | None = None
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        if fcntl is None:
            return
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(self.fd, 64).decode(errors="replace").strip() or "another process"
            self.release()
            raise RunFolderBusy(
                f"{self.path.parent} is being written by process {holder}; "
                "wait for it to finish or choose another --out"
            ) from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"{os.getpid()}\n".encode())

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the lock
            self.fd = None

    def __del__(self):
        self.release()
