"""tonic internals (checked by tests/test_adapters.py with tonic 1.7): the completeness check that
makes a dataset's constructor download."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def without_download(dataset_class: type) -> type:
    """A subclass of a ``tonic.datasets`` class whose constructor trusts the files on disk (its
    caller checks them) and so never downloads."""
    return type(dataset_class.__name__, (dataset_class,), {"_check_exists": lambda self: True})
