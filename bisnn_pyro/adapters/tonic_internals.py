"""tonic internals (checked by tests/test_adapters.py with tonic 1.7): the completeness check that
makes a dataset's constructor download."""

from __future__ import annotations

from functools import lru_cache

DATASETS = ("NMNIST", "DVSGesture")  # the tonic datasets the library reads


@lru_cache(maxsize=None)
def without_download(dataset_class: type) -> type:
    """A subclass of a ``tonic.datasets`` class whose constructor trusts the files on disk (its
    caller checks them) and so never downloads.  It keeps the class's name (tonic names the data
    folder after it) and is reachable as an attribute of this module, so its instances pickle
    (``DataLoader`` workers started by spawn receive them so)."""
    name = dataset_class.__name__
    return type(name, (dataset_class,), {"_check_exists": lambda self: True, "__module__": __name__, "__qualname__": name})


def __getattr__(name: str) -> type:
    """``tonic_internals.NMNIST`` and ``.DVSGesture``: the classes :func:`without_download` makes."""
    if name not in DATASETS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import tonic.datasets

    return without_download(getattr(tonic.datasets, name))
