"""Compiled elliptical slice: K iterations as one compiled MLX program per driver step.

`elliptical_slice` decides on the host whether each proposal is on the slice
(one counted sync per shrink round) and scores each proposal with a full
`update` of the model through the GFI. On a static-structure model neither is
needed:

1. Flatten once. `genmlx.flat_density.build` traces the model with the
   addresses as variables and every other choice at its value. log L(x), the
   density of everything but the addresses' own prior sites, enters the slice
   test only through differences log L(x') - log L(x), so only the sites whose
   parameters read an address count (`FlatDensity.readers`, minus the
   addresses' own sites): `log_density(values, include=those)`. Each
   address's prior N(mu, sigma^2) must be fixed for the run: its parameters
   read no address (`FlatDensity.depends`), so mu and sigma are constants of
   the program. A model it cannot flatten (a Python branch on a random value),
   or one whose priors read the addresses, runs `elliptical_slice` instead,
   decided once (`stats["compiled"]`, `stats["fallback"]`).
2. Unroll the shrinking. MLX has no data-dependent loop inside a compiled
   function, so each iteration runs R = `max_rounds` shrink rounds, all of
   them, masked: round r proposes x' = mu + (x - mu) cos(theta_r) + nu sin(theta_r),
   and the first round whose proposal is above the level (log L(x') >
   log L(x) + log u) gives the new point; later rounds are ignored. The rounds
   are not evaluated one after another: the bracket moves only when a round is
   off the slice, so until an iteration lands its angles depend on its
   uniforms alone (the paper's rule: the first angle uniform on [0, 2 pi] with
   the bracket [theta - 2 pi, theta]; an angle below 0 becomes the bracket's
   lower end, else its upper end; the next angle uniform in the bracket). All R
   angles of all K iterations of a block are computed up front (`_angles`), and
   an iteration scores its R proposals as one batch (`log_density(...,
   batch=1)`), takes the first on the slice (`argmax` of the `[R]` flags) and
   reads its value and log L with `mx.take`. The chain is the one R rounds one
   after another would make, bit for bit (the same angles, the same
   proposals, the same first landing), at one batched likelihood evaluation
   per iteration instead of R dependent ones (benchmarks/test_bench_elliptical.py:
   9-10x fewer CPU seconds than the sequential rounds at R = 32).
3. Cap. An iteration none of whose R rounds lands on the slice keeps the
   current point (the limit of endless shrinking: the bracket closes on
   theta = 0, x itself) and counts as `capped`. This is still a valid
   transition: the paper's reversibility argument pairs each path of k rounds
   from x to x' with a path of k rounds from x' to x of the same probability
   (the same level, the same ellipse, the same rejected points on it), so the
   part of the kernel that takes exactly k rounds satisfies detailed balance
   on its own, for every k; keeping those with k <= R and turning the rest
   into "stay" (trivially reversible) leaves the posterior invariant. Only the mixing pays, and R is
   chosen so that it essentially never happens (`DEFAULT_MAX_ROUNDS`).
4. Block. K iterations are one `mx.compile`d function of (the step's key, the
   current values, their log L). The block's randomness is drawn up front from
   keys split once (taken as views: an int index is a gather): each address's
   K nu's as one normal draw `[K, ...]`, and the K x (R + 1) uniforms (the
   level's, the first angle's, the R - 1 later angles') as one uniform draw;
   each iteration takes views of its rows. The block returns the new values,
   their log L, each iteration's rounds until the slice (`num_steps`; R for a
   capped one), the block's `capped` count and the values after iterations 0,
   thin, 2 thin, ... stacked `[K // thin]`. One driver step = one block = one
   evaluation (pipelined), no host sync. The kept values become traces only on
   access (`StackedTraces`).

Checked before the first block (once per kernel): the flattened density equals
the model's `assess` at the initial values and at CHECK_STATES joint draws of
the addresses from their priors (a dependence the flattening run cannot see
would otherwise go unnoticed), and the block traces and compiles. Either
failing runs `elliptical_slice`, with the reason in `stats["fallback"]`.

Invalid parameters. A likelihood site whose parameters fail their check
scores NaN (flat_density), and NaN is never above the level: such a proposal
is off the slice, as it is to `elliptical_slice` (whose update weight is NaN
there too). A NaN log L at the chain's start would keep every proposal off the
slice: it is a ValueError before the run.

Same transition as `elliptical_slice_step` (up to the cap), not the same random
stream. Kernels are cached per model, addresses, K, thin, R, args, trace
structure and the values of the choices the chain does not change
(`KernelCache`): a second call of the same run does not retrace.
"""

from __future__ import annotations

import math
from typing import Sequence

import mlx.core as mx
import numpy as np

from .. import flat_density
from ..address import from_path
from ..evaluation import evaluate
from ..selection import Selection
from ..rng import row
from ..trace import Trace
from . import driver
from ._common import check_count, scalar_paths, start_site_chain
from .compiled import (_VIEW_KEY, _Block, _constants, _value, block_size, default_block, model_scores, run_blocks,
                       trace_with)
from .elliptical import _gaussian_site, elliptical_slice_kernel
from .kernel_keys import KernelCache, args_key, structure_key
from .mh import run_chain
from .result import InferenceResult

__all__ = ["compiled_elliptical_slice", "CompiledElliptical", "EllipticalState", "kernel_for",
           "DEFAULT_MAX_ROUNDS", "DEFAULT_BLOCK"]

# Shrink rounds per iteration (R). An iteration scores all R proposals whether it needs them or not,
# and R proposals that never land cap it (it stays put: only mixing pays). The rounds an iteration
# needs grow with the log of how much narrower the posterior is than the prior. Measured (20,000
# iterations each, R = 64): conjugate normal means with 6, 20, 100 and 1,000 observations (posterior
# sd 1/5 to 1/63 of the prior's) needed at most 17, 18, 22 and 28 rounds; the tests' models at most
# 18 (a 2-vector mean), 17 (2-weight logistic regression), 25 (a normal mean) and 30 (a linear
# regression whose correlated posterior is 58x narrower than its prior along one direction; over 24:
# 3 of the 20,000); the benchmark's 10-weight logistic regression at most 21. R = 32 caps none of
# them; on the CPU it costs 1.0-1.5x what R = 16 costs per iteration (batched rounds: the cost grows
# far slower than R), where R = 16 would cap 0.005-2.6% of these runs' iterations (the most on the
# narrowest posteriors). `stats["capped"]` tells when a model needs more.
DEFAULT_MAX_ROUNDS = 32
# Iterations per block by default. A block's evaluation has a fixed cost (the call, the evaluation,
# the driver's step), paid rarely at a few dozen iterations; the graph and its tracing time grow with
# K (by a few dozen nodes an iteration, whatever R), and on the 2-core CPU a K = 50 iteration costs
# 0.7-1.0x a K = 16 one and about what a K = 100 one costs.
DEFAULT_BLOCK = 50
CHECK_STATES = 16  # prior draws of the addresses at which the flattened density is checked against the model

_TWO_PI = 2.0 * math.pi


class EllipticalState:
    """A compiled elliptical slice chain between blocks: the addresses' values and their log likelihood."""

    __slots__ = ("values", "ll")

    def __init__(self, values: tuple, ll):
        self.values, self.ll = values, ll

    def _genmlx_arrays(self):
        yield from self.values
        yield self.ll


class CompiledElliptical:
    """K fused elliptical slice iterations over `paths` (updated jointly) on traces shaped like `template`.

    `compiled` says whether the model can run compiled; when it cannot, `reason` says why (and
    `compiled_elliptical_slice` runs `elliptical_slice`). `block(key, state) -> (state, kept, stats)`:
    one block of K iterations, `kept` the addresses' values stacked `[K // thin]`, `stats` the `[K]`
    `num_steps` and the block's `capped` count.
    """

    def __init__(self, template: Trace, paths: list, k: int, thin: int, rounds: int):
        self.k = check_count("compiled_elliptical_slice", "iterations_per_step", k, 1)
        self.thin = check_count("compiled_elliptical_slice", "thin", thin, 1)
        self.rounds = check_count("compiled_elliptical_slice", "max_rounds", rounds, 1)
        self.gen_fn, self.args = template.gen_fn, template.args
        self.paths = list(template.get_choices().paths())
        self.changed = list(dict.fromkeys(paths))
        fixed = set(self.changed)
        self.constant_paths = [p for p in self.paths if p not in fixed]
        self.constants = _constants(template, self.constant_paths)
        self.flat = flat_density.build(self.gen_fn, self.args, template.get_choices(), self.changed)
        self._fn = None
        self.reason = self._why_dynamic()
        if self.reason is None:
            self.mus, self.sigmas = self._priors(template)
            self.likelihood = self._likelihood_sites()
            values = [_value(template, p) for p in self.changed]
            self.reason = self._why_disagrees(template) or self._why_no_program(values)
        self.compiled = self.reason is None

    # -- can it compile? ------------------------------------------------------------------
    def _why_dynamic(self) -> str | None:
        if self.flat is None:
            return ("genmlx.flat_density cannot flatten the model (a Python decision on a random value, "
                    "a combinator or a function it does not know)")
        for p in self.changed:
            if self.flat.depends(p):  # its mean or scale would move with the ellipse
                return (f"the prior of address {from_path(p)!r} reads addresses being updated "
                        "(jointly updated sites must not be each other's parents)")
        return None

    def _priors(self, template: Trace) -> tuple[list, list]:
        """Each address's prior mean and standard deviation (fixed for the run), as evaluated arrays of
        the value's dtype: constants of the program."""
        mus, sigmas = [], []
        for p in self.changed:
            _, d = _gaussian_site(template, p)
            dtype = _value(template, p).dtype
            mus.append(mx.array(d.mu).astype(dtype))
            sigmas.append(mx.array(d.sigma).astype(dtype))
        evaluate(mus, sigmas)
        return mus, sigmas

    def _likelihood_sites(self) -> list:
        """The sites whose parameters read an address, minus the addresses' own: all of log L that
        changes with them (the rest cancels in log L(x') - log L(x))."""
        own = set(self.changed)
        readers = {q for p in self.changed for q in self.flat.readers(p)}
        return [s.path for s in self.flat.sites if s.path in readers and s.path not in own]

    def _why_disagrees(self, template: Trace) -> str | None:
        """The flattened density against the model's `assess` at the template's values and at
        CHECK_STATES joint draws of the addresses from their priors; and the likelihood as the block
        scores it (the states as one batch) against the same sites scored state by state.

        A dependence the flattening run cannot see would make the flattened density wrong without
        failing; the model's own density at other states shows it.
        """
        rng = np.random.default_rng(0)
        base = [_value(template, p) for p in self.changed]
        states = [base]
        for _ in range(CHECK_STATES):
            states.append([m + s * mx.array(rng.standard_normal(v.shape), dtype=v.dtype)
                           for v, m, s in zip(base, self.mus, self.sigmas)])
        try:
            flat = [self.flat.log_density(values) for values in states]
            lik = [self.log_likelihood(values) for values in states]
            model = model_scores(self, template, states)
            batched = self._batch_log_likelihood([mx.stack(col) for col in zip(*states)])
            evaluate(flat, model, lik, batched)
        except Exception as e:  # the GFI will meet (and report) the same problem, if it is one
            return f"the model could not be scored at other values of the addresses ({type(e).__name__}: {e})"
        flat, model, lik, batched = (np.asarray(a, dtype=np.float64) for a in
                                     (mx.stack(flat), mx.stack(model), mx.stack(lik), batched))
        if not np.allclose(flat, model, rtol=1e-4, atol=1e-3, equal_nan=True):
            return "the flattened density disagrees with the model's at other values of the addresses"
        if not np.allclose(batched, lik, rtol=1e-4, atol=1e-3, equal_nan=True):
            return "the flattened likelihood scored as a batch disagrees with it scored state by state"
        return None

    def _why_no_program(self, values: list) -> str | None:
        """Trace and compile the block once now (MLX keeps it for the run's first call): a model
        whose density MLX cannot compile runs `elliptical_slice` instead of failing mid-run."""
        fn = mx.compile(self._block)
        try:
            fn(_VIEW_KEY, self.log_likelihood(values), *values)  # built, never evaluated
        except Exception as e:
            return f"MLX cannot compile the block ({type(e).__name__}: {e})"
        self._fn = fn
        return None

    # -- the compiled block -------------------------------------------------------------------
    def log_likelihood(self, values: list):
        """log L at the addresses' `values`, up to a constant: the sites that read them."""
        return self.flat.log_density(list(values), include=self.likelihood).astype(mx.float32)

    def _batch_log_likelihood(self, values: list):
        """log L of a batch of states (every value with one leading axis): one density each."""
        return self.flat.log_density(values, include=self.likelihood, batch=1).astype(mx.float32)

    def _block(self, key, ll, *values):
        k, r, n = self.k, self.rounds, len(values)
        ks = mx.random.split(key, n + 1)
        # the block's randomness, drawn up front: each address's K nu's, and per iteration the
        # level's uniform, the first angle's and the R - 1 later angles' (rows taken as views)
        nus = [s * mx.random.normal((k, *v.shape), dtype=v.dtype, key=row(ks, j))
               for j, (v, s) in enumerate(zip(values, self.sigmas))]
        us = mx.random.uniform(shape=(r + 1, k), key=row(ks, n))
        log_u = mx.log(row(us, 0))
        angles = _angles(us)  # [K, R]
        cos, sin = mx.cos(angles), mx.sin(angles)
        # per address: [K, R, 1, ...] so that a row [R, 1, ...] broadcasts against the value's shape
        shaped = [(mx.reshape(cos, (k, r) + (1,) * v.ndim), mx.reshape(sin, (k, r) + (1,) * v.ndim))
                  for v in values]
        values = list(values)
        kept = [[] for _ in values]
        steps, capped = [], mx.array(0, mx.int32)
        for it in range(k):
            rows = [(row(c, it), row(s, it)) for c, s in shaped]
            values, ll, n_steps, done = self._iteration(values, ll, [row(nu, it) for nu in nus], rows,
                                                        ll + row(log_u, it))
            steps.append(n_steps)
            capped = capped + mx.logical_not(done).astype(mx.int32)
            if it % self.thin == 0:
                for rows_, v in zip(kept, values):
                    rows_.append(v)
        return [*values, ll, mx.stack(steps), capped, *(mx.stack(rows_) for rows_ in kept)]

    def _iteration(self, x: list, ll, nu: list, trig: list, level):
        """One iteration from `x` (log L `ll`): its R proposals scored as one batch, the first on
        the slice (above `level`) taken. Returns the new point, its log L, the rounds it took (R when
        capped) and whether a round landed on the slice."""
        props = [m + (xi - m) * c + ni * s for xi, ni, m, (c, s) in zip(x, nu, self.mus, trig)]  # [R, ...]
        lp = self._batch_log_likelihood(props)
        lands = lp > level  # NaN (invalid parameters) never lands
        done = mx.any(lands)
        first = mx.argmax(lands)  # the first round on the slice (0 when none is)
        new = [mx.where(done, mx.take(p, first, axis=0), xi) for p, xi in zip(props, x)]
        new_ll = mx.where(done, mx.take(lp, first), ll)
        n_steps = mx.where(done, first.astype(mx.int32) + 1, self.rounds)
        return new, new_ll, n_steps, done

    def block(self, key, state: EllipticalState):
        """One block of K iterations from `state`: (the new state, the kept values, the block's stats)."""
        outs = self._fn(key, state.ll, *state.values)
        n = len(self.changed)
        kept = _Block(dict(zip(self.changed, outs[n + 3:])))
        return EllipticalState(tuple(outs[:n]), outs[n]), kept, {"num_steps": outs[n + 1], "capped": outs[n + 2]}

    # -- states and traces --------------------------------------------------------------------
    def initial_state(self, trace: Trace) -> EllipticalState:
        values = tuple(_value(trace, p) for p in self.changed)
        return EllipticalState(values, self.log_likelihood(values))

    def trace_of(self, ref: Trace, values) -> Trace:
        """The trace whose addresses hold `values` and whose other choices are `ref`'s, scored anew."""
        return trace_with(self, ref, values)


def _angles(us: mx.array) -> mx.array:
    """The R angles of each of the block's K iterations, `[K, R]`, from its uniforms `us` (rows 1..R).

    Round r + 1's angle follows from round r's bracket, and the bracket moves only when round r
    is off the slice: until an iteration lands its angles do not depend on the likelihood, so all R
    are known up front (those after the landing are never used). The paper's shrinking: the first
    angle uniform on [0, 2 pi], the bracket [theta - 2 pi, theta]; an angle below 0 becomes the
    bracket's lower end, else its upper end, and the next angle is uniform in the bracket."""
    theta = _TWO_PI * row(us, 1)
    lo, hi = theta - _TWO_PI, theta
    out = [theta]
    for j in range(2, us.shape[0]):
        below = theta < 0
        lo, hi = mx.where(below, theta, lo), mx.where(below, hi, theta)
        theta = lo + (hi - lo) * row(us, j)
        out.append(theta)
    return mx.stack(out, axis=1)


_cache = KernelCache()


def kernel_for(template: Trace, paths: list, k: int, thin: int, rounds: int) -> CompiledElliptical:
    """A `CompiledElliptical` for traces shaped like `template`, reused across calls: its program is
    traced once per model, addresses, K, thin, R, args, trace structure and values of the choices the
    chain does not change (the flattened density bakes them in)."""
    return _cache.lookup(template, lambda: (id(template.gen_fn), tuple(paths), k, thin, rounds,
                                            args_key(template.args), structure_key(template)),
                         lambda: CompiledElliptical(template, paths, k, thin, rounds),
                         lambda h: _constants(template, h.constant_paths))


def _default_block(n_samples: int, burn: int, thin: int) -> int:
    """The multiple of thin nearest DEFAULT_BLOCK, cut to the run's length."""
    return default_block(n_samples, burn, thin, DEFAULT_BLOCK)


def compiled_elliptical_slice(model, args: tuple, observations=None, *, addresses: Sequence, n_samples: int,
                              burn: int = 0, thin: int = 1, iterations_per_step: int | None = None,
                              max_rounds: int = DEFAULT_MAX_ROUNDS, key=None, init: Trace | None = None,
                              callback=None, progress=None) -> InferenceResult:
    """Elliptical slice sampling of the Gaussian-prior sites `addresses` (jointly), K iterations per
    driver step, compiled and sync-free.

    One iteration is `elliptical_slice_step`'s transition, with at most `max_rounds` shrink rounds:
    an iteration that has not reached the slice after them keeps the current point (still a valid
    MCMC transition; see the module docstring). A model that `genmlx.flat_density` cannot flatten
    (its structure follows the values), an address whose prior reads another address, a flattened
    density that disagrees with the model, or a block MLX cannot compile runs `elliptical_slice`
    instead (`stats["compiled"]` False, `stats["fallback"]` why).

    Args:
        iterations_per_step: K iterations per block (default: the multiple of `thin` nearest
            `DEFAULT_BLOCK` = 50, cut to the run's sampling iterations); must be a multiple of
            `thin`. `burn` is rounded up to a multiple of K.
        max_rounds: R, the shrink rounds every iteration scores (as one batch; the first on the
            slice is taken). Default `DEFAULT_MAX_ROUNDS` = 32: posteriors up to 63x narrower
            than the prior needed at most 30 in the measurements (see the constant); raise it
            for a likelihood that concentrates more (`stats["capped"]` says when it is hit).
        callback: `callback(step, state, stats)` after each block, with the block's
            `EllipticalState` (the addresses' values and their log likelihood).

    Returns:
        Like `elliptical_slice`: `.traces` (views made on access; `.traces.values(addr)` for all
        values at once), `.state` (the last trace), per-iteration `num_steps` (rounds until the
        slice; R for a capped iteration), `capped` (iterations that kept their point after R
        rounds, in all), `syncs` (0 when compiled), `ess_bulk`, `ess_tail`, `r_hat`,
        `iterations_per_step`, `compiled`.

    Raises:
        ValueError: as `elliptical_slice` (an address that is not a normal-prior random choice, or
            that is observed; n_samples < 0, burn < 0, thin < 1), an `iterations_per_step` < 1 or
            not a multiple of `thin`, a `max_rounds` < 1, a NaN likelihood at the initial trace.
    """
    alg = "compiled_elliptical_slice"
    tr, obs, addresses, paths, k_run = start_site_chain(alg, model, args, observations, addresses, init, key,
                                                        n_samples=n_samples, burn=burn, thin=thin)
    for p in paths:
        _gaussian_site(tr, p)
    rounds = check_count(alg, "max_rounds", max_rounds, 1)
    k = block_size(alg, iterations_per_step, _default_block(n_samples, burn, thin), thin)
    kernel = kernel_for(tr, paths, k, thin, rounds)
    if not kernel.compiled:
        res = run_chain("elliptical_slice", elliptical_slice_kernel(addresses), tr, n_samples, burn=burn, thin=thin,
                        key=k_run, callback=callback, progress=progress, summary_paths=paths)
        res.stats.update(compiled=False, fallback=kernel.reason, iterations_per_step=1, capped=0)
        return res

    state = kernel.initial_state(tr)
    evaluate(state.ll)  # (a setup read, before the run: not one of its syncs)
    if math.isnan(state.ll.item()):
        raise ValueError(f"{alg}: the likelihood of the initial trace is NaN (invalid parameters?): no proposal "
                         "could ever be on the slice")

    def step(key_, state_):
        return driver.Step(*kernel.block(key_, state_))

    res, out = run_blocks(alg, kernel, tr, state, step, n_samples=n_samples, burn=burn, thin=thin, k=k, key=k_run,
                          model=model, params={"max_rounds": rounds, "addresses": [repr(a) for a in addresses]},
                          callback=callback, progress=progress, paths=scalar_paths(tr, Selection(kernel.changed), obs))
    out.stats.update(max_rounds=rounds, compiled=True, capped=int(sum(res.stats.get("capped", []))))
    return out
