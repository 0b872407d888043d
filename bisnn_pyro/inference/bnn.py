"""BayesianSNN: network + prior + likelihood + guide, with fit, predict and evaluate."""

from __future__ import annotations

from typing import Callable

import pyro
import torch
from pyro import poutine

from ..models.likelihoods import ReadoutCategorical
from ..models.priors import Prior
from .predict import check_mode, point_weights, readouts_with_weights, sample_weights

GuideBuilder = Callable[[Callable], torch.nn.Module]


class BayesianSNN(torch.nn.Module):
    """A spiking network whose prior-selected weights are latent, with a guide over them.

    ``prior.apply_(net)`` turns weights into sample sites; ``guide(model)`` builds the guide (any
    Pyro guide: ours, or ``AutoDelta``/``AutoNormal``).  ``kl_weight`` (beta) scales the weight
    sites in model and guide alike, so the ELBO reads E[log p(y|w)] - beta KL(q || p).
    Call :meth:`setup` with an example input before training or loading a state dict.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        prior: Prior,
        likelihood: ReadoutCategorical,
        guide: GuideBuilder,
        *,
        kl_weight: float = 1.0,
    ):
        super().__init__()
        if not pyro.settings.get("module_local_params"):
            raise RuntimeError(
                "BayesianSNN keeps its parameters in its modules: enable "
                "pyro.settings.set(module_local_params=True) before building networks "
                "(importing bisnn_pyro does this)"
            )
        if not kl_weight >= 0:
            raise ValueError(f"KL weight must be >= 0, got {kl_weight}")
        self.net = prior.apply_(net)
        self.prior = prior
        self.likelihood = likelihood
        self.kl_weight = kl_weight
        self.guide = guide(self.model)

    def model(
        self,
        x: torch.Tensor,
        y: torch.Tensor | None = None,
        *,
        t0: int = 0,
        state=None,
        carry: dict | None = None,
        kl_scale: float = 1.0,
    ) -> torch.Tensor:
        """The Pyro model over steps t0 .. t0 + T - 1 of ``x`` (B, T, features); returns readouts.

        ``state`` continues a sequence; ``carry['state']`` receives the state after the last step.
        ``kl_scale`` divides the KL among the steps of an online sequence.
        """
        with self._weight_sites(kl_scale):
            out = self.net(x, state)
        if carry is not None:
            carry["state"] = [s.detach() for s in out.state]
        self.likelihood(out.readouts, y, t0)
        return out.readouts

    def prior_buffers(self) -> dict[str, torch.Tensor]:
        """The prior's parameter tensor per latent site of the network (what its sample sites read)."""
        buffers = {}
        for module_name, module in self.net.named_modules():
            for attr in getattr(module, "_pyro_samples", {}):
                buffers[f"{module_name}.{attr}" if module_name else attr] = getattr(module, f"{attr}_prior")
        return buffers

    def prior_distributions(self) -> dict[str, torch.distributions.Distribution]:
        """p(w) per latent site of the network, as its sample sites define it."""
        return {
            name: self.prior.distribution(buffer).to_event(buffer.dim())
            for name, buffer in self.prior_buffers().items()
        }

    def guide_fn(self, *args, kl_scale: float = 1.0, **kwargs):
        """The guide, under the same KL scaling as the model's weight sites."""
        with self._weight_sites(kl_scale):
            return self.guide(*args, **kwargs)

    def _weight_sites(self, kl_scale: float):
        """The KL weight on the weight sites: a scale, or for beta = 0 a mask (Pyro's scale must be
        positive), so that the ELBO keeps only the likelihood."""
        scale = self.kl_weight * kl_scale
        return poutine.scale(scale=scale) if scale > 0 else poutine.mask(mask=False)

    def setup(self, example_x: torch.Tensor) -> "BayesianSNN":
        """Create the guide's parameters from one example input (B, T, features)."""
        example = example_x[:1, :1]
        if hasattr(self.guide, "setup"):
            self.guide.setup(example)
        else:
            with torch.no_grad(), poutine.block():
                self.guide(example)
        return self

    @torch.no_grad()
    def predictive_readouts(
        self, x: torch.Tensor, mode: str = "ensemble", samples: int = 10, batch_size: int = 500
    ) -> torch.Tensor:
        """Readout logits per weight draw, (K, N, layers, T, classes); K = 1 for map and mean.
        The same K draws serve every chunk of ``batch_size`` points."""
        check_mode(mode, samples)
        if mode == "ensemble":
            weights = self.draw_weights(x, samples)
        else:
            weights = {k: v.unsqueeze(0) for k, v in point_weights(self.guide, mode).items()}
        return self.readouts_with(weights, x, batch_size)

    def draw_weights(self, x: torch.Tensor, samples: int) -> dict[str, torch.Tensor]:
        """``samples`` exact draws from the guide per site, each with a leading draw dimension."""
        return sample_weights(self.guide, x[:1, :1], samples)

    @torch.no_grad()
    def readouts_with(self, weights: dict[str, torch.Tensor], x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """Readouts (K, N, layers, T, classes) of the network with its weight sites set to ``weights``
        (each with a leading draw dimension K), ``batch_size`` points at a time on the weights'
        device; returned on the device of ``x``."""
        device = next(iter(weights.values())).device
        chunks = [
            readouts_with_weights(self.net, weights, x[i : i + batch_size].to(device))
            for i in range(0, x.shape[0], batch_size)
        ]
        return torch.cat(chunks, dim=1).to(x.device)

    def predictive_probs(
        self, x: torch.Tensor, mode: str = "ensemble", samples: int = 10, batch_size: int = 500
    ) -> torch.Tensor:
        """Class probabilities per weight draw, shape (K, N, classes); K = 1 for map and mean."""
        return self.likelihood.probs(self.predictive_readouts(x, mode, samples, batch_size))

    def predict(self, x: torch.Tensor, mode: str = "ensemble", samples: int = 10) -> torch.Tensor:
        """Posterior-predictive class probabilities (N, classes): draws averaged in probability."""
        return self.predictive_probs(x, mode, samples).mean(0)

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, mode: str = "ensemble", samples: int = 10) -> dict:
        """Accuracy and mean negative log-likelihood of the predictive distribution on (x, y)."""
        probs = self.predict(x, mode, samples)
        nll = -torch.log(probs.gather(-1, y.long().unsqueeze(-1)).clamp_min(1e-12)).mean()
        return {"accuracy": (probs.argmax(-1) == y).float().mean().item(), "nll": nll.item()}
