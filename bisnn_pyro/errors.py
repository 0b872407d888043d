"""The library's errors: each is something the user can act on, said in one line.

The command line prints any of them as ``bisnn-pyro: error: <message>`` with exit status 2;
anything else that escapes is a bug, reported in one line with the path of a log file holding
the traceback (``main``).
"""

from __future__ import annotations


class BisnnError(Exception):
    """Base of the library's errors: the message is one line naming the value or file at fault."""


class ConfigError(BisnnError, ValueError):
    """A configuration value is out of range, of the wrong type, or unknown."""


class CompositionError(BisnnError, ValueError):
    """Parts that cannot be trained together, or a part that breaks a protocol."""


class CheckpointError(BisnnError, ValueError):
    """A checkpoint is missing, unreadable, damaged or not the run's."""


class DataError(BisnnError, ValueError):
    """A data file or folder is missing, malformed or not what was expected."""


class TrainingDiverged(BisnnError, FloatingPointError):
    """The ELBO or a gradient became NaN or infinite."""


class RunFolderBusy(BisnnError, RuntimeError):
    """Another process is writing the run folder."""


class PeerFailed(BisnnError, RuntimeError):
    """Another process of a data-parallel run failed (and said why itself): this one stops too.
    The command line exits with status 2 without repeating it."""


def one_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name where it has none."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
