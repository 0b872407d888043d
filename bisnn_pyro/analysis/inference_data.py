"""The posterior and its predictions as ArviZ InferenceData.

Groups: ``posterior`` (draws of every latent site with dims of its own: weights per layer, and
scalar or per-neuron hyper-latents; per draw the fraction of +1 weights of each +-1 site),
``variational_parameters`` (P(w = +1) per weight; it has no draw dimension,
so it lives outside ``posterior`` where ``az.summary`` expects chain and draw on every variable),
``posterior_predictive`` (class probabilities and sampled labels per draw and point),
``observed_data`` (the labels) and ``log_likelihood`` (per draw and point, for ``az.loo``,
``az.waic`` and ``az.compare``).  Variational draws form one chain.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

import arviz as az
import numpy as np
import torch
import xarray as xr

from .posterior import sign_posteriors


def variable_name(site: str) -> str:
    """``layers.0.weight`` -> ``w_layers_0``; any other site its name with ``_`` for ``.``."""
    if site.endswith(".weight"):
        return "w_" + site.removesuffix(".weight").replace(".", "_")
    return site.replace(".", "_")


def _dims(name: str, ndim: int) -> list[str]:
    return [f"{name}_out", f"{name}_in"] if ndim == 2 else [f"{name}_dim{i}" for i in range(ndim)]


def build_inference_data(
    draws: dict[str, torch.Tensor],
    draw_probs: torch.Tensor,
    labels: torch.Tensor,
    *,
    shapes: dict[str, Sequence[int]],
    binary: Sequence[str] = (),
    p_plus: dict[str, torch.Tensor] | None = None,
    var_names: Sequence[str] | None = None,
    attrs: dict[str, Any] | None = None,
    seed: int = 0,
) -> az.InferenceData:
    """InferenceData from K draws of every latent site (site -> K * prod(shape) values, e.g.
    (K, 1, out, in); a point estimate may give one draw), their class probabilities (K, N, C)
    and the labels (N,).  ``shapes`` gives each site's own shape, ``binary`` the +-1 sites (whose
    fraction of +1 per draw is always kept); ``var_names`` selects the sites whose draws are
    kept (default: all)."""
    draws = {site: value.detach().cpu() for site, value in draws.items()}  # NumPy lives on the host
    p_plus = {site: p.detach().cpu() for site, p in p_plus.items()} if p_plus else p_plus
    draw_probs, labels = draw_probs.detach().cpu(), labels.cpu()
    num_draws, points, classes = draw_probs.shape
    if labels.shape != (points,):
        raise ValueError(f"labels must have shape ({points},) to match the probabilities, got {tuple(labels.shape)}")
    selected = set(var_names) if var_names is not None else {variable_name(site) for site in draws}
    posterior: dict[str, np.ndarray] = {}
    dims: dict[str, list[str]] = {}
    for site, value in draws.items():
        name, shape = variable_name(site), tuple(shapes[site])
        value = value.reshape(-1, *shape)
        value = value.expand(num_draws, *shape)  # a point estimate is one draw repeated
        if site in binary:
            posterior[f"frac_plus_{name.removeprefix('w_')}"] = (value > 0).double().flatten(1).mean(1)[None].numpy()
        if name in selected:
            posterior[name] = value[None].double().numpy()
            dims[name] = _dims(name, len(shape))
    probs = draw_probs.double().clamp_min(1e-300)
    generator = torch.Generator().manual_seed(seed)
    sampled = torch.multinomial(probs.reshape(-1, classes), 1, generator=generator).reshape(num_draws, points)
    log_lik = torch.log(probs.gather(-1, labels.long().view(1, points, 1).expand(num_draws, points, 1))).squeeze(-1)
    coords = {"point": np.arange(points), "class": np.arange(classes)}
    groups = {
        "posterior": az.dict_to_dataset(posterior, dims=dims),
        "posterior_predictive": az.dict_to_dataset(
            {"y": sampled[None].numpy(), "probs": probs[None].numpy()},
            coords=coords,
            dims={"y": ["point"], "probs": ["point", "class"]},
        ),
        "log_likelihood": az.dict_to_dataset({"y": log_lik[None].numpy()}, coords=coords, dims={"y": ["point"]}),
        "observed_data": xr.Dataset(
            {"y": xr.DataArray(labels.numpy(), dims=["point"], coords={"point": coords["point"]})}
        ),
    }
    if p_plus:
        groups["variational_parameters"] = xr.Dataset(
            {
                f"p_plus_{variable_name(site).removeprefix('w_')}": xr.DataArray(
                    p.double().numpy(), dims=_dims(variable_name(site), p.dim())
                )
                for site, p in p_plus.items()
            }
        )
    idata = az.InferenceData(**groups)
    for group in idata.groups():
        idata[group].attrs.update(
            {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in (attrs or {}).items()}
        )
    return idata


def to_inference_data(
    bsnn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    samples: int = 20,
    var_names: Sequence[str] | None = None,
    attrs: dict[str, Any] | None = None,
    seed: int = 0,
) -> az.InferenceData:
    """Draw ``samples`` values of every latent site from the guide of ``bsnn`` and convert them and
    their predictions on (x, y) with ``build_inference_data``."""
    draws = bsnn.draw_weights(x, samples)
    draw_probs = bsnn.likelihood.probs(bsnn.readouts_with(draws, x))
    return build_inference_data(
        draws, draw_probs, y, **site_layout(bsnn), var_names=var_names, attrs=attrs, seed=seed
    )


def site_layout(bsnn) -> dict[str, Any]:
    """The keyword arguments of ``build_inference_data`` that describe the sites of ``bsnn``:
    their shapes, the +-1 ones, and P(w = +1) per weight where the guide gives q(w)."""
    return {
        "shapes": {site.name: site.shape for site in bsnn.sites},
        "binary": [site.name for site in bsnn.sites if site.binary],
        "p_plus": {name: q.probs for name, q in sign_posteriors(bsnn).items()},
    }
