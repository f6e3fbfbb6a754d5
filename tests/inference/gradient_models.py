"""Models with known posteriors for the gradient-based samplers (MALA, HMC, NUTS), and the check they share."""

from __future__ import annotations

import math

import mlx.core as mx
import numpy as np

import genmlx as gm
from genmlx import dist

# normal-normal: mu ~ N(0, 1), y_i ~ N(mu, 1)  ->  mu | y ~ N(sum(y) / (n + 1), 1 / (n + 1))
NN_YS = [1.0, 2.0, 0.5]
NN_OBS = {f"y{i}": y for i, y in enumerate(NN_YS)}
NN_POST = {"mu": (sum(NN_YS) / (len(NN_YS) + 1), math.sqrt(1.0 / (len(NN_YS) + 1)))}


@gm.gen
def normal_normal(n):
    mu = gm.trace("mu", dist.normal(0.0, 1.0))
    for i in range(n):
        gm.trace(f"y{i}", dist.normal(mu, 1.0))
    return mu


# the 5-site linear regression: exact Gaussian posterior
XS, YS = [1.0, 2.0, 3.0], [3.1, 5.0, 6.9]
LR_OBS = {f"y{i}": y for i, y in enumerate(YS)}


@gm.gen
def linreg(xs):
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    for i, x in enumerate(xs):
        gm.trace(f"y{i}", dist.normal(slope * x + intercept, 1.0))
    return slope


def _linreg_posterior():
    design = np.stack([np.array(XS), np.ones(len(XS))], axis=1)  # slope, intercept
    cov = np.linalg.inv(design.T @ design + np.eye(2) / 100.0)
    mean = cov @ design.T @ np.array(YS)
    return {"slope": (mean[0], math.sqrt(cov[0, 0])), "intercept": (mean[1], math.sqrt(cov[1, 1]))}, cov


LR_POST, LR_COV = _linreg_posterior()
LR_CORR = LR_COV[0, 1] / math.sqrt(LR_COV[0, 0] * LR_COV[1, 1])

# a correlated 2-D Gaussian (no observations): x ~ N(0, 1), y | x ~ N(rho x, sqrt(1 - rho^2))
RHO = 0.95


@gm.gen
def correlated():
    x = gm.trace("x", dist.normal(0.0, 1.0))
    gm.trace("y", dist.normal(RHO * x, math.sqrt(1 - RHO * RHO)))


CORR_POST = {"x": (0.0, 1.0), "y": (0.0, 1.0)}

# Neal's funnel, 9 + 1 dimensions (centered): v ~ N(0, 3), x_i ~ N(0, exp(v / 2))
FUNNEL_N = 9


@gm.gen
def funnel():
    v = gm.trace("v", dist.normal(0.0, 3.0))
    scale = mx.exp(v / 2)
    for i in range(FUNNEL_N):
        gm.trace(f"x{i}", dist.normal(0.0, scale))


FUNNEL_ADDRS = ["v"] + [f"x{i}" for i in range(FUNNEL_N)]

# Beta-Bernoulli: p ~ Beta(2, 2), y ~ Bernoulli(p), 7 ones in 10  ->  p | y ~ Beta(9, 5)
BB_DATA = [1, 1, 0, 1, 1, 1, 0, 1, 1, 0]
BB_OBS = {f"y{i}": y for i, y in enumerate(BB_DATA)}
_A, _B = 2 + sum(BB_DATA), 2 + len(BB_DATA) - sum(BB_DATA)
BB_POST = {"p": (_A / (_A + _B), math.sqrt(_A * _B / ((_A + _B) ** 2 * (_A + _B + 1))))}


@gm.gen
def beta_bernoulli():
    p = gm.trace("p", dist.beta(2.0, 2.0))
    for i in range(len(BB_DATA)):
        gm.trace(f"y{i}", dist.bernoulli(p))
    return p


K_MCSE = 4.0  # allowed error in Monte Carlo standard errors (about 6e-5 two-sided for Gaussian errors)


def check_posterior(result, post: dict, k: float = K_MCSE, min_ess: float = 50.0) -> None:
    """Posterior mean and sd of each address within k Monte Carlo standard errors.

    MCSE(mean) = sd / sqrt(ESS) and MCSE(sd) = sd / sqrt(2 ESS) (Gaussian
    approximation), with the chain's own bulk ESS (which must reach `min_ess`).
    """
    for addr, (mean, sd) in post.items():
        v = np.asarray(result.values(addr), dtype=np.float64)
        ess = result.stats["ess_bulk"][addr]
        assert ess >= min_ess, f"{addr}: ESS {ess:.0f} < {min_ess}"
        m_tol, s_tol = k * sd / math.sqrt(ess), k * sd / math.sqrt(2 * ess)
        assert abs(v.mean() - mean) < m_tol, f"{addr}: mean {v.mean():.4f} vs {mean:.4f} (tolerance {m_tol:.4f}, ESS {ess:.0f})"
        assert abs(v.std(ddof=1) - sd) < s_tol, f"{addr}: sd {v.std(ddof=1):.4f} vs {sd:.4f} (tolerance {s_tol:.4f}, ESS {ess:.0f})"


def corr(result, a: str, b: str) -> float:
    return float(np.corrcoef(np.asarray(result.values(a)), np.asarray(result.values(b)))[0, 1])


def corr_tolerance(rho: float, ess: float, k: float = K_MCSE) -> float:
    """k standard errors of a sample correlation: (1 - rho^2) / sqrt(ESS)."""
    return k * (1 - rho * rho) / math.sqrt(ess)


class PhaseRecorder:
    """Two `FlatRecorder`s: one for warm-up (adaptation) iterations, one for sampling iterations.

    A phase may hold a different, constant number of arrays (adaptation state
    during warm-up); what must not happen is growth within a phase.
    """

    def __init__(self, burn: int, every: int, start: int = 100):
        from memory_flat import FlatRecorder

        self.burn = burn
        self.warm = FlatRecorder(every=every, warmup=min(start, burn))
        self.samp = FlatRecorder(every=every, warmup=burn + 50)

    def on_run_start(self, e):  # the kept samples are the caller's, not a leak
        self.warm.keep = self.samp.keep = e.store

    def __call__(self, i, state=None, stats=None):
        if i < self.burn - 50 or i >= self.burn:
            (self.warm if i < self.burn else self.samp)(i, state, stats)


def assert_flat_run(run, burn: int, every: int = 25):
    """Run `run(callback)` under the Metal-sized budget; live arrays and pending nodes stay flat in each phase."""
    from genmlx import events

    rec = PhaseRecorder(burn, every)
    with gm.memory.budget(499_000), events.subscribed(rec):
        res = run(rec)
    if burn:
        rec.warm.assert_flat()
    rec.samp.assert_flat()
    return res, rec


def values_of(result) -> dict:
    """Every kept value and per-iteration statistic, as plain Python (for bit-for-bit comparisons)."""
    out = {a: result.values(a) for a in result.traces[0].get_choices().addresses()} if result.traces else {}
    out.update({k: v for k, v in result.stats.items() if isinstance(v, list)})
    return out


# Gamma-Poisson (positive: exp transform): lam ~ Gamma(3, rate 1), y ~ Poisson(lam) -> Gamma(3 + sum y, 1 + n)
GP_DATA = [2, 4, 3, 5]
GP_OBS = {f"y{i}": y for i, y in enumerate(GP_DATA)}
_GA, _GB = 3.0 + sum(GP_DATA), 1.0 + len(GP_DATA)
GP_POST = {"lam": (_GA / _GB, math.sqrt(_GA) / _GB)}


@gm.gen
def gamma_poisson():
    lam = gm.trace("lam", dist.gamma(3.0, 1.0))
    for i in range(len(GP_DATA)):
        gm.trace(f"y{i}", dist.poisson(lam))


# Dirichlet-categorical (simplex: stick-breaking): p ~ Dir(1, 1, 1), y ~ Cat(p) -> Dir(1 + counts)
DC_DATA = [0, 0, 1, 0, 2, 0]
DC_OBS = {f"y{i}": y for i, y in enumerate(DC_DATA)}
DC_ALPHA = np.array([1.0 + DC_DATA.count(k) for k in range(3)])


@gm.gen
def dirichlet_categorical():
    p = gm.trace("p", dist.dirichlet(mx.array([1.0, 1.0, 1.0])))
    for i in range(len(DC_DATA)):
        gm.trace(f"y{i}", dist.categorical(mx.log(p)))


# von Mises near the wrap point (circular: wrapping); E cos(x - mu) = I1(kappa) / I0(kappa)
VM_MU, VM_KAPPA = 3.0, 2.0


@gm.gen
def von_mises_model():
    gm.trace("theta", dist.von_mises(VM_MU, VM_KAPPA))


# Wishart (positive definite: Cholesky with exp'd diagonal): E W = df * I, Var W_ii = 2 df
WI_DF = 5.0


@gm.gen
def wishart_model():
    gm.trace("w", dist.wishart(WI_DF, mx.eye(2)))


# -- vector sites: one choice holding several values ---------------------------------------------

@gm.gen
def linreg_vec(xs):
    """`linreg` with the observations as one vector site "y" (xs an array): the same log density."""
    slope = gm.trace("slope", dist.normal(0.0, 10.0))
    intercept = gm.trace("intercept", dist.normal(0.0, 10.0))
    gm.trace("y", dist.normal(slope * xs + intercept, 1.0))
    return slope


LR_VEC_ARGS, LR_VEC_OBS = (mx.array(XS),), {"y": mx.array(YS)}

# a vector latent site with a positive support: lam ~ iid Gamma(3, 1) (3 values), y ~ Poisson(lam)
# (one vector site) -> lam_i | y ~ Gamma(3 + y_i, 2)
GPV_DATA = [2.0, 0.0, 6.0]
GPV_POST = [((3.0 + y) / 2.0, math.sqrt(3.0 + y) / 2.0) for y in GPV_DATA]


@gm.gen
def gamma_poisson_vec():
    lam = gm.trace("lam", dist.iid(dist.gamma(3.0, 1.0), len(GPV_DATA)))
    gm.trace("y", dist.poisson(lam))
    return lam


def check_vector_posterior(result, addr, post, k: float = K_MCSE, min_ess: float = 50.0) -> None:
    """`check_posterior` for each element of a vector address ([(mean, sd)] per element)."""
    v = np.asarray(result.values(addr), dtype=np.float64)
    for i, (mean, sd) in enumerate(post):
        ess = result.stats["ess_bulk"][(addr, i)]
        assert ess >= min_ess, f"{addr}[{i}]: ESS {ess:.0f} < {min_ess}"
        m_tol, s_tol = k * sd / math.sqrt(ess), k * sd / math.sqrt(2 * ess)
        assert abs(v[:, i].mean() - mean) < m_tol, f"{addr}[{i}]: mean {v[:, i].mean():.4f} vs {mean:.4f}"
        assert abs(v[:, i].std(ddof=1) - sd) < s_tol, f"{addr}[{i}]: sd {v[:, i].std(ddof=1):.4f} vs {sd:.4f}"


@gm.gen
def funnel_vec():
    """`funnel` with x as one iid vector site of FUNNEL_N values: the same log density."""
    v = gm.trace("v", dist.normal(0.0, 3.0))
    gm.trace("x", dist.iid(dist.normal(0.0, mx.exp(v / 2)), FUNNEL_N))
