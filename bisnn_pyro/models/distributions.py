"""Distributions over binary weights w in {-1, +1}, in natural parameters.

A sign-Bernoulli with natural parameter lam has P(w = +1) = sigmoid(2 lam), mean tanh(lam) and
log p(w) = w lam - log(2 cosh lam); its support is the two points {-1, +1} (``sign_values``,
a discrete constraint, so Pyro's enumeration, validation and autoguides see what it is).  The
relaxed (binary concrete) form draws w~ = tanh((lam + delta) / tau) with logistic noise delta; it
is continuous on [-1, 1], sign(w~) has exactly the sign-Bernoulli law, and w~ is differentiable in
lam.  A relaxed draw is never scored by the exact distribution: the pair (relaxed guide, exact
prior) is charged the exact discrete KL, registered below.
"""

from __future__ import annotations

import torch
from pyro.distributions import TorchDistribution
from torch.distributions import constraints
from torch.distributions.kl import register_kl
from torch.distributions.utils import lazy_property
from torch.nn.functional import logsigmoid

from ..adapters.torch_internals import tanh_backward
from .shapes import broadcast_shape


class _SignValues(constraints.Constraint):
    """The two-point set {-1, +1}."""

    is_discrete = True
    event_dim = 0

    def check(self, value: torch.Tensor) -> torch.Tensor:
        return (value == 1) | (value == -1)

    def __repr__(self) -> str:
        return "{-1, +1}"


sign_values = _SignValues()
relaxed_sign_values = constraints.interval(-1.0, 1.0)


def log_two_cosh(x: torch.Tensor) -> torch.Tensor:
    """log(2 cosh x), stable for large |x|."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a))


def _saturation(x: torch.Tensor) -> torch.Tensor:
    """s = sigmoid(-2|x|) in (0, 1/2]: then |tanh x| = 1 - 2s, 1 - tanh^2 x = 4s(1 - s) and
    log 2cosh x = |x| - log(1 - s), none of them cancelling against 1 where |x| is large, and a
    sigmoid is a third of torch.tanh's time on CPU."""
    return torch.abs(x).mul_(-2.0).sigmoid_()


def _fisher_from_saturation(s: torch.Tensor) -> torch.Tensor:
    return torch.addcmul(s, s, s, value=-1.0).mul_(4.0)


def sign_fisher(natural: torch.Tensor) -> torch.Tensor:
    """Fisher information 1 - tanh(lam)^2 of a sign-Bernoulli in its natural parameter, accurate
    where it is small (the KL's gradient uses the same formula, so the natural-gradient rule turns
    the KL part into lam - lam_prior to rounding)."""
    return _fisher_from_saturation(_saturation(natural))


def natural_from_probs(p: torch.Tensor | float) -> torch.Tensor:
    """Natural parameter lam = 0.5 logit(p) of a sign-Bernoulli with P(w = +1) = p, finite for p in
    [0, 1] (p is held within [tiny, 1 - eps] of its dtype: a draw of a Beta may round to 0 or 1)."""
    if not torch.is_tensor(p):
        p = torch.as_tensor(p, dtype=torch.get_default_dtype())
    finfo = torch.finfo(p.dtype)
    p = p.clamp(finfo.tiny, 1.0 - finfo.eps)
    return 0.5 * (torch.log(p) - torch.log1p(-p))


class _SignBase(TorchDistribution):
    """Shared shape handling for distributions parametrised by a natural parameter tensor."""

    arg_constraints = {"natural": constraints.real}

    def __init__(self, natural: torch.Tensor, validate_args: bool | None = None):
        if not torch.is_tensor(natural):
            natural = torch.as_tensor(natural, dtype=torch.get_default_dtype())
        self.natural = natural
        super().__init__(self.natural.shape, validate_args=validate_args)

    def _copy_expanded(self, new, batch_shape):
        new.natural = self.natural.expand(batch_shape)
        TorchDistribution.__init__(new, torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @property
    def probs(self) -> torch.Tensor:
        """P(w = +1)."""
        return torch.sigmoid(2.0 * self.natural)

    @property
    def mean(self) -> torch.Tensor:
        return torch.tanh(self.natural)

    @property
    def mode(self) -> torch.Tensor:
        return torch.where(self.natural >= 0, 1.0, -1.0).to(self.natural.dtype)


class SignBernoulli(_SignBase):
    r"""Exact distribution over $w \in \{-1, +1\}$ with natural parameter $\lambda$ (``natural``):

    $$P(w = +1) = \sigma(2\lambda), \qquad \mathbb{E}[w] = \tanh\lambda, \qquad
    \log p(w) = w\lambda - \log 2\cosh\lambda .$$

    The exponential family of BayesBiNN's $w_r$: its Fisher information in $\lambda$ is
    $1 - \tanh^2\lambda$, which the learning rule divides by.  The KL between two of them is
    closed-form, $\mathrm{KL}(q_\lambda \| p_{\lambda_p}) = \tanh\lambda\,(\lambda - \lambda_p)
    - \log\cosh\lambda + \log\cosh\lambda_p$, registered for ``torch.distributions.kl_divergence``
    (and against ``RelaxedSignBernoulli``, whose sign it describes).

    ``logits`` (..., 2), unnormalised log-probabilities of -1 and +1 in the order of
    ``enumerate_support``, may be given instead of ``natural`` (as Pyro's
    ``TraceEnum_ELBO.compute_marginals`` builds a marginal).
    """

    support = sign_values
    has_enumerate_support = True

    def __init__(
        self,
        natural: torch.Tensor | None = None,
        validate_args: bool | None = None,
        *,
        logits: torch.Tensor | None = None,
    ):
        if (natural is None) == (logits is None):
            raise ValueError("give exactly one of natural or logits")
        if logits is not None:
            natural = 0.5 * (logits[..., 1] - logits[..., 0])
        super().__init__(natural, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(SignBernoulli, _instance)
        return self._copy_expanded(new, batch_shape)

    @property
    def variance(self) -> torch.Tensor:
        return sign_fisher(self.natural)  # 1 - tanh^2 lam, without cancellation where it is small

    @lazy_property
    def log_normalizer(self) -> torch.Tensor:
        """log 2cosh(lam), computed once per distribution object: a prior reused over many steps
        pays for it once.  Without gradient (the KL has its own closed-form gradient in lam)."""
        with torch.no_grad():
            return log_two_cosh(self.natural)

    @lazy_property
    def uniform(self) -> bool:
        """Whether every natural parameter is 0 (P(w = +1) = 1/2), checked once per distribution object."""
        with torch.no_grad():
            return not bool(self.natural.any())

    def sample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008  torch.Size is immutable; torch's signature
        shape = self._extended_shape(sample_shape)
        with torch.no_grad():
            u = torch.rand(shape, dtype=self.natural.dtype, device=self.natural.device)
            return torch.where(u < self.probs.expand(shape), 1.0, -1.0).to(self.natural.dtype)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        return value * self.natural - log_two_cosh(self.natural)

    def entropy(self) -> torch.Tensor:
        return log_two_cosh(self.natural) - torch.tanh(self.natural) * self.natural

    def enumerate_support(self, expand: bool = True) -> torch.Tensor:
        values = torch.tensor([-1.0, 1.0], dtype=self.natural.dtype, device=self.natural.device)
        values = values.reshape((2,) + (1,) * len(self.batch_shape))
        return values.expand((2,) + self.batch_shape) if expand else values


class RelaxedSignBernoulli(_SignBase):
    r"""Binary concrete relaxation of ``SignBernoulli`` at temperature $\tau$ (``temperature``).

    ``rsample`` returns

    $$\tilde w = \tanh\frac{\lambda + \delta}{\tau}, \qquad \delta = \tfrac12\,\mathrm{logit}\,u,
    \quad u \sim U(0, 1),$$

    whose sign is distributed exactly as ``SignBernoulli(λ)`` and which is differentiable in
    $\lambda$: the reparameterised gradient of Bayes-BiSNN.  As $\tau \to 0$ the draw approaches
    the sign (less bias, more variance of the gradient); large $\tau$ smooths it.  ``log_prob`` is
    the density of $\tilde w$ on $(-1, 1)$, evaluated on values clamped a few ulps inside the
    interval so that it stays finite at saturated samples.
    """

    support = relaxed_sign_values
    has_rsample = True

    def __init__(
        self,
        natural: torch.Tensor,
        temperature: float | torch.Tensor,
        validate_args: bool | None = None,
    ):
        positive = temperature > 0 if not torch.is_tensor(temperature) else bool((temperature.detach() > 0).all())
        if not positive:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature
        super().__init__(natural, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(RelaxedSignBernoulli, _instance)
        new.temperature = self.temperature
        return self._copy_expanded(new, batch_shape)

    @property
    def hard(self) -> SignBernoulli:
        """The exact distribution of sign(w~)."""
        return SignBernoulli(self.natural)

    def rsample(self, sample_shape=torch.Size()) -> torch.Tensor:  # noqa: B008  torch.Size is immutable; torch's signature
        shape = self._extended_shape(sample_shape)
        finfo = torch.finfo(self.natural.dtype)
        u = torch.rand(shape, dtype=self.natural.dtype, device=self.natural.device)
        u = u.clamp_(finfo.tiny, 1.0 - finfo.eps)
        if torch.is_tensor(self.temperature) and self.temperature.requires_grad:
            # a learned temperature: the same arithmetic as _RelaxedSign, through autograd
            return 2.0 * torch.sigmoid((2.0 * self.natural + torch.log(u / (1.0 - u))) / self.temperature) - 1.0
        return _RelaxedSign.apply(self.natural, u, self.temperature)

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        eps = torch.finfo(value.dtype).eps
        w = value.clamp(-1.0 + eps, 1.0 - eps)
        log1p_w, log1m_w = torch.log1p(w), torch.log1p(-w)
        tau = torch.as_tensor(self.temperature, dtype=w.dtype, device=w.device)
        x = tau * (log1p_w - log1m_w) - 2.0 * self.natural
        return logsigmoid(x) + logsigmoid(-x) + torch.log(2.0 * tau) - log1p_w - log1m_w


class _RelaxedSign(torch.autograd.Function):
    """w = tanh((lam + 0.5 logit(u)) / tau) with the backward dw/dlam = (1 - w^2) / tau from the
    output alone: the relaxed draw is taken at every online step, so its cost matters.  Computed
    as 2 sigmoid((2 lam + logit(u)) / tau) - 1: one logarithm and a sigmoid instead of two
    logarithms and a tanh (a third of the time on CPU; the same value to float rounding)."""

    @staticmethod
    def forward(ctx, natural: torch.Tensor, u: torch.Tensor, temperature) -> torch.Tensor:
        w = torch.logit(u).add_(natural, alpha=2.0).div_(temperature).sigmoid_().mul_(2.0).sub_(1.0)
        ctx.save_for_backward(w)
        ctx.temperature = temperature
        return w

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (w,) = ctx.saved_tensors
        return tanh_backward(grad, w).div_(ctx.temperature), None, None


class _SignKL(torch.autograd.Function):
    """KL(SignBernoulli(lq) || SignBernoulli(lp)) = tanh(lq)(lq - lp) - log2cosh(lq) + log2cosh(lp),
    with the closed-form gradients (1 - tanh^2 lq)(lq - lp) and tanh(lp) - tanh(lq).  It runs at
    every online step, so it is written in few passes: with a = |lq| and s = sigmoid(-2a) (see
    ``_saturation``), tanh(lq) lq - log2cosh(lq) = log(1 - s) - 2 s a, and the KL is that,
    minus tanh(lq) lp (skipped for a ``uniform`` prior, lp = 0), plus log2cosh(lp), which may come
    precomputed (``log_normalizer_p``)."""

    @staticmethod
    def forward(
        ctx, natural_q: torch.Tensor, natural_p: torch.Tensor, log_normalizer_p=None, uniform: bool = False
    ) -> torch.Tensor:
        magnitude = torch.abs(natural_q)
        s = torch.mul(magnitude, -2.0).sigmoid_()
        kl = torch.neg(s).log1p_().addcmul_(s, magnitude, value=-2.0)
        shape = broadcast_shape(natural_q.shape, natural_p.shape)
        if kl.shape != shape:  # a prior with more dimensions than the posterior
            kl = kl.expand(shape).contiguous()
        if not uniform:
            kl.addcmul_(_mean_from_saturation(s, natural_q), natural_p, value=-1.0)
        ctx.save_for_backward(s, natural_q, natural_p)
        ctx.uniform = uniform
        if log_normalizer_p is None:
            log_normalizer_p = log_two_cosh(natural_p)
        return kl.add_(log_normalizer_p)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s, natural_q, natural_p = ctx.saved_tensors
        grad_q = grad_p = None
        if ctx.needs_input_grad[0]:
            difference = natural_q if ctx.uniform else natural_q - natural_p
            grad_q = _reduce_to(torch.mul(_fisher_from_saturation(s), difference).mul_(grad), natural_q)
        if ctx.needs_input_grad[1]:
            grad_p = _reduce_to(grad * (torch.tanh(natural_p) - _mean_from_saturation(s, natural_q)), natural_p)
        return grad_q, grad_p, None, None


def _mean_from_saturation(s: torch.Tensor, natural: torch.Tensor) -> torch.Tensor:
    """tanh(natural) = sign(natural) (1 - 2s)."""
    return torch.mul(s, -2.0).add_(1.0).copysign_(natural)


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of ``like``."""
    while grad.dim() > like.dim():
        grad = grad.sum(0)
    for dim, size in enumerate(like.shape):
        if size == 1 and grad.shape[dim] != 1:
            grad = grad.sum(dim, keepdim=True)
    return grad


def _sign_kl(natural_q: torch.Tensor, p: SignBernoulli) -> torch.Tensor:
    if p.natural.requires_grad:  # a learned prior: nothing about it can be kept between steps
        return _SignKL.apply(natural_q, p.natural)
    return _SignKL.apply(natural_q, p.natural, p.log_normalizer, p.uniform)


@register_kl(SignBernoulli, SignBernoulli)
def _kl_sign_sign(q: SignBernoulli, p: SignBernoulli) -> torch.Tensor:
    return _sign_kl(q.natural, p)


@register_kl(RelaxedSignBernoulli, SignBernoulli)
def _kl_relaxed_sign(q: RelaxedSignBernoulli, p: SignBernoulli) -> torch.Tensor:
    """Exact discrete KL of the signs: the relaxation is only a gradient device."""
    return _sign_kl(q.natural, p)
