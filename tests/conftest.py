import pyro
import pytest
import torch

import bisnn_pyro  # noqa: F401


@pytest.fixture(autouse=True)
def _isolated_registry():
    """Parts a test registers (a plugin, the README's example) are gone after it."""
    from bisnn_pyro.config import REGISTRY

    saved = {kind: dict(parts) for kind, parts in REGISTRY.parts.items()}
    loaded = REGISTRY.entry_points_loaded
    yield
    REGISTRY.parts.update({kind: dict(parts) for kind, parts in saved.items()})
    REGISTRY.entry_points_loaded = loaded


@pytest.fixture(autouse=True)
def _isolated_pyro():
    """Every test starts from a fixed seed, Pyro's default settings (global parameters: the library
    keeps its own module-local) and an empty global store."""
    pyro.settings.set(module_local_params=False)
    pyro.clear_param_store()
    pyro.set_rng_seed(0)
    torch.set_num_threads(2)
    yield
    assert len(pyro.get_param_store()) == 0, "a test left parameters in Pyro's global store"
