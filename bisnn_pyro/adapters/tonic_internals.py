"""tonic internals (checked by tests/test_adapters.py with tonic 1.7): the completeness check that
makes a dataset's constructor download; and tonic itself, imported only when an event-camera
data set is read (tonic is the optional extra ``[events]``, with its audio stack)."""

from __future__ import annotations

import importlib
from functools import lru_cache
from types import ModuleType

from ..errors import DataError

INSTALL = 'pip install "bisnn-pyro[events]"'


def tonic_module(name: str) -> ModuleType:
    """``tonic.<name>`` (e.g. "datasets", "transforms"); a one-line DataError without tonic."""
    try:
        return importlib.import_module(f"tonic.{name}")
    except ImportError as error:
        raise DataError(
            f"the event-camera data sets need tonic, which is not installed ({error.name or 'tonic'}): {INSTALL}"
        ) from None

DATASETS = ("NMNIST", "DVSGesture")  # the tonic datasets the library reads


@lru_cache(maxsize=None)
def without_download(dataset_class: type) -> type:
    """A subclass of a ``tonic.datasets`` class whose constructor trusts the files on disk (its
    caller checks them) and so never downloads.  It keeps the class's name (tonic names the data
    folder after it) and is reachable as an attribute of this module, so its instances pickle
    (``DataLoader`` workers started by spawn receive them so)."""
    name = dataset_class.__name__
    return type(
        name, (dataset_class,), {"_check_exists": lambda self: True, "__module__": __name__, "__qualname__": name}
    )


def __getattr__(name: str) -> type:
    """``tonic_internals.NMNIST`` and ``.DVSGesture``: the classes ``without_download`` makes."""
    if name not in DATASETS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return without_download(getattr(tonic_module("datasets"), name))
