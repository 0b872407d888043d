"""BayesianSNN: network + prior + likelihood + guide, with fit, predict and evaluate."""

from __future__ import annotations

from typing import Callable

import torch
from pyro import poutine
from pyro.infer.autoguide import AutoGuide

from ..adapters.pyro_internals import give_local_param_state, local_params
from ..models.likelihoods import Likelihood
from ..models.priors import Prior
from .guides import BetaGuide, GuideList, covered_sites, set_up
from .predict import check_mode, point_weights, readouts_with_weights, sample_weights
from .sites import CompositionError, ModelSites, base_distribution, describe, latent_sites, pair_problem

GuideBuilder = Callable[[Callable], torch.nn.Module]
ENGINES = ("auto", "float", "packed")


class BayesianSNN(torch.nn.Module):
    """A spiking network whose prior-selected weights are latent, with a guide over them.

    ``prior.apply_(net)`` turns weights into sample sites; ``guide(model)`` builds the guide (any
    Pyro guide module: ours, a Pyro autoguide, yours).  ``kl_weight`` (beta) scales every latent
    site in model and guide alike, so the ELBO reads E[log p(y|w)] - beta KL(q || p), and
    ``SVI(model.model, model.guide, ...)`` optimises exactly that.  Call ``setup`` with an
    example input before training or loading a state dict: it checks that the guide fits the
    prior site by site (one-line ``CompositionError`` otherwise) and gives
    hyper-latents the guide does not cover a ``BetaGuide``.
    """

    def __init__(
        self,
        net: torch.nn.Module,
        prior: Prior,
        likelihood: Likelihood,
        guide: GuideBuilder,
        *,
        kl_weight: float = 1.0,
    ):
        super().__init__()
        if not kl_weight >= 0:
            raise ValueError(f"KL weight must be >= 0, got {kl_weight}")
        if getattr(net, "local_learning", False) and likelihood.readouts == "last":
            raise CompositionError(
                f"{type(likelihood).__name__} scores only the last layer's readout, so under local learning "
                "(DECOLLE) the other layers would learn nothing; use local_learning=False (--learning end-to-end)"
            )
        self.net = prior.apply_(net)
        self.prior = prior
        self.likelihood = likelihood
        self.kl_weight = kl_weight
        self._sites: ModelSites | None = None
        with local_params():
            self.guide = self._scaled(guide(self.model))
        give_local_param_state(self)

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
        """The Pyro model over steps t0 .. t0 + T - 1 of ``x`` (B, T, features); returns readouts
        (also recorded as the deterministic site ``readouts``, so ``Predictive`` returns them).

        ``state`` continues a sequence; ``carry['state']`` receives the state after the last step.
        ``kl_scale`` divides the KL among the steps of an online sequence.
        """
        with self.latent_scale(kl_scale), local_params():
            out = self.net(x, state)
        if carry is not None:
            carry["state"] = [s.detach() for s in out.state]
        self.likelihood(out.readouts, y, t0)
        return out.readouts

    def latent_scale(self, kl_scale: float = 1.0):
        """The KL weight on the latent sites: a scale, or for beta = 0 a mask (Pyro's scale must be
        positive), so that the ELBO keeps only the likelihood."""
        scale = self.kl_weight * kl_scale
        return poutine.scale(scale=scale) if scale > 0 else poutine.mask(mask=False)

    def _scaled(self, guide: torch.nn.Module) -> torch.nn.Module:
        """``guide`` with the model's KL weight on its sites: its ``forward`` runs inside
        ``latent_scale`` for the call's ``kl_scale`` (a ``with`` block, so nothing is left on
        Pyro's stack whatever interrupts it)."""
        if not isinstance(guide, torch.nn.Module):
            raise CompositionError(
                "the guide must be a torch.nn.Module (a PyroModule) that keeps its parameters, "
                f"got {type(guide).__name__}"
            )
        guide.forward = _ScaledForward(self, _unscaled(guide).forward)
        return guide
    @property
    def sites(self) -> ModelSites:
        """The description of the latent sites (after ``setup``)."""
        if self._sites is None:
            raise RuntimeError("BayesianSNN.setup(example input) must be called first")
        return self._sites

    def setup(self, example_x: torch.Tensor) -> "BayesianSNN":
        """Create the guide's parameters from one example input (B, T, features), check that the
        guide covers and fits every latent site, and describe the sites for the engines.

        The guide sets itself up with the caller's random generators, as it always has (so a seed
        gives the runs it gave before); the traces that check and describe the sites draw from
        forks of the generators, which they leave as they were."""
        with local_params():
            args = (example_x[:1, :1], torch.zeros(1, dtype=torch.long, device=example_x.device))
            tensors = [example_x, *self.net.buffers(), *self.parameters()]
            devices = sorted({t.device for t in tensors if t.device.type == "cuda"}, key=str)
            with torch.random.fork_rng(devices=devices):
                model_sites = latent_sites(self.model, *args)
                if isinstance(self.guide, AutoGuide):  # an autoguide would fail obscurely on a discrete site
                    for name, site in model_sites.items():
                        problem = pair_problem(name, base_distribution(site["fn"]), site["fn"], self.guide)
                        if problem:
                            raise CompositionError(problem)
            set_up(self.guide, *args)
            with torch.random.fork_rng(devices=devices):
                # what the guide covers, read without running it (a PyroModule that has run as a model
                # or guide of its own cannot become a part of a GuideList)
                covered = covered_sites(self.guide)
                hyper = [name for name in model_sites if covered is not None and name not in covered]
                beta = BetaGuide(self.model)
                if hyper and all(beta.covers(base_distribution(model_sites[name]["fn"])) for name in hyper):
                    composed = GuideList(self.model, [_unscaled(self.guide), beta]).setup(*args)
                    self.guide = self._scaled(composed)
                self._sites = describe(self.guide, self.net, model_sites, *args)
            return self

    def prior_buffers(self) -> dict[str, torch.Tensor]:
        """The tensor each latent site's prior reads (sites whose prior reads one)."""
        return {site.name: site.prior_buffer for site in self.sites if site.prior_buffer is not None}

    def prior_distributions(self) -> dict[str, torch.distributions.Distribution]:
        """p(w) per latent site of a model without hyper-latents, as its sample sites define it."""
        if self.sites.hyper:
            raise CompositionError(
                f"the priors of this model depend on its hyper-latents ({', '.join(self.sites.hyper)}); "
                "trace the model for them"
            )
        return {
            site.name: self.prior.distribution(site.name, site.prior_buffer, site.shape).to_event(len(site.shape))
            for site in self.sites
        }

    @torch.no_grad()
    def predictive_readouts(
        self, x: torch.Tensor, mode: str = "ensemble", samples: int = 10, batch_size: int = 500, engine: str = "auto"
    ) -> torch.Tensor:
        """Readout logits per weight draw, (K, N, layers, T, classes); K = 1 for map and mean.
        The same K draws serve every chunk of ``batch_size`` points; ``engine`` as in ``readouts_with``."""
        check_mode(mode, samples)
        if mode == "ensemble":
            weights = self.draw_weights(x, samples)
        else:
            weights = {k: v.unsqueeze(0) for k, v in point_weights(self.guide, mode).items()}
        return self.readouts_with(weights, x, batch_size, engine)

    def draw_weights(self, x: torch.Tensor, samples: int) -> dict[str, torch.Tensor]:
        """``samples`` exact draws from the guide per site, each with a leading draw dimension."""
        return sample_weights(self.guide, x[:1, :1], samples)

    @torch.no_grad()
    def readouts_with(
        self, weights: dict[str, torch.Tensor], x: torch.Tensor, batch_size: int = 500, engine: str = "auto"
    ) -> torch.Tensor:
        """Readouts (K, N, layers, T, classes) of the network with its weight sites set to ``weights``
        (each with a leading draw dimension K), ``batch_size`` points at a time on the weights'
        device; returned on the device of ``x``.

        ``engine``: ``"float"`` runs the network's float32 tensors; ``"packed"`` the packed 1-bit
        engine (``bisnn_pyro.packed``: +-1 weights and spikes counted with integer additions on the
        CPU), the same readouts bit for bit, or a one-line ``CompositionError`` saying why it cannot;
        ``"auto"`` takes the packed engine where it applies (``readouts_and_engine`` also says which ran)."""
        return self.readouts_and_engine(weights, x, batch_size, engine)[0]

    @torch.no_grad()
    def readouts_and_engine(
        self, weights: dict[str, torch.Tensor], x: torch.Tensor, batch_size: int = 500, engine: str = "auto"
    ) -> tuple[torch.Tensor, str]:
        """``readouts_with``'s readouts and the engine that computed them, ``"packed"`` or ``"float"``."""
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; expected one of {ENGINES}")
        if engine != "float":
            packed, reason = self.packed_network(weights, x)
            if packed is not None:
                return packed.readouts(x.cpu(), batch_size).to(x.device), "packed"
            if engine == "packed":
                raise CompositionError(f"the packed engine cannot run this: {reason}")
        device = next(iter(weights.values())).device
        chunks = [
            readouts_with_weights(self.net, weights, x[i : i + batch_size].to(device))
            for i in range(0, max(x.shape[0], 1), batch_size)  # no points: one empty chunk
        ]
        return torch.cat(chunks, dim=1).to(x.device), "float"

    def packed_network(self, weights: dict[str, torch.Tensor], x: torch.Tensor | None = None):
        """(``PackedNetwork`` of the network with ``weights``, '') where the packed engine can run it
        (and take inputs ``x``, if given), else (None, why not)."""
        from ..packed.network import PackedNetwork, inputs_problem, network_problem, weights_problem

        reason = network_problem(self.net)
        if not reason:
            layers = [weights.get(name) if name is not None else None for name in self.sites.layer_weights]
            missing = [index for index, weight in enumerate(layers) if weight is None]
            if missing:
                reason = f"layer {missing[0]}'s weight is not among the latent sites given"
            else:
                reason = weights_problem(self.net, layers)
        if not reason and x is not None:
            reason = inputs_problem(x, tuple(self.net.input_shape))
            if not reason and x.dtype != torch.float32:  # what the float network takes: the engines agree
                reason = f"the inputs are {x.dtype}; the network takes float32 spikes"
        if reason:
            return None, reason
        with local_params():
            return PackedNetwork.from_network(self.net, layers), ""

    def predictive_probs(
        self, x: torch.Tensor, mode: str = "ensemble", samples: int = 10, batch_size: int = 500, engine: str = "auto"
    ) -> torch.Tensor:
        """Class probabilities per weight draw, shape (K, N, classes); K = 1 for map and mean."""
        return self.likelihood.probs(self.predictive_readouts(x, mode, samples, batch_size, engine))

    def predict(self, x: torch.Tensor, mode: str = "ensemble", samples: int = 10, engine: str = "auto") -> torch.Tensor:
        """Posterior-predictive class probabilities (N, classes): draws averaged in probability
        (``engine``: ``"auto"``, ``"float"`` or ``"packed"``, as in ``readouts_with``)."""
        return self.predictive_probs(x, mode, samples, engine=engine).mean(0)

    def evaluate(
        self, x: torch.Tensor, y: torch.Tensor, mode: str = "ensemble", samples: int = 10, engine: str = "auto"
    ) -> dict:
        """Accuracy and mean negative log-likelihood of the predictive distribution on (x, y)."""
        probs = self.predict(x, mode, samples, engine)
        nll = -torch.log(probs.gather(-1, y.long().unsqueeze(-1)).clamp_min(1e-12)).mean()
        return {"accuracy": (probs.argmax(-1) == y).float().mean().item(), "nll": nll.item()}


class _ScaledForward:
    """A guide's ``forward`` under a ``BayesianSNN``'s KL weight, set on the guide instance
    (an object rather than a closure, so that a deep copy of the model scales its own copy)."""

    def __init__(self, bsnn: BayesianSNN, forward: Callable):
        self.bsnn, self.forward = bsnn, forward

    def __call__(self, *args, **kwargs):
        with self.bsnn.latent_scale(kwargs.get("kl_scale", 1.0)), local_params():
            return self.forward(*args, **kwargs)


def _unscaled(guide: torch.nn.Module) -> torch.nn.Module:
    """``guide`` without a ``_ScaledForward`` set on it (a guide composed into a
    ``GuideList`` is scaled once, through the list)."""
    if isinstance(guide.__dict__.get("forward"), _ScaledForward):
        del guide.forward
    return guide
