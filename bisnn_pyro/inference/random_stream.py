"""A random stream of a run's own: Pyro draws from PyTorch's global generators, so a run swaps its
own state into them while it draws and swaps the caller's back after, leaving the caller's
generators exactly as they were."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


class RandomStream:
    """The states of the CPU generator and, for a CUDA ``device``, that device's generator.

    ``with stream:`` runs the block on the stream (which moves on); ``forked`` runs it on a
    copy (the stream stays where it was: an evaluation does not change what training draws next).
    """

    def __init__(self, seed: int = 0, device: str | torch.device | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        with torch.random.fork_rng(devices=self._cuda()):
            torch.manual_seed(seed)
            self.state = self._get()

    def _cuda(self) -> list[int]:
        return [self.device.index or 0] if self.device.type == "cuda" else []

    def _get(self) -> dict[str, torch.Tensor]:
        state = {"torch_rng": torch.get_rng_state()}
        if self._cuda():
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _set(self, state: dict[str, torch.Tensor]) -> None:
        torch.set_rng_state(state["torch_rng"])
        if self._cuda() and "cuda_rng" in state:  # a CPU run reopened on a GPU starts that device's stream here
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)

    def __enter__(self) -> "RandomStream":
        self._callers = self._get()
        self._set(self.state)
        return self

    def __exit__(self, *exc) -> None:
        self.state = self._get()
        self._set(self._callers)

    @contextmanager
    def forked(self) -> Iterator[None]:
        """Run the block on a copy of the stream."""
        with torch.random.fork_rng(devices=self._cuda()):
            self._set(self.state)
            yield

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.state)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Take the generator states of ``state`` (``torch_rng``, and ``cuda_rng`` where the run
        drew on a GPU; one without it keeps this stream's CUDA state)."""
        given = {k: v for k, v in state.items() if k in ("torch_rng", "cuda_rng")}
        if "torch_rng" in given:
            torch.Generator().set_state(given["torch_rng"])  # a state the CPU generator cannot take fails here
        self.state = {**self.state, **given}
