"""The No-U-Turn Sampler: multinomial trajectory sampling, generalized U-turn criterion.

The algorithm is Stan's (Hoffman & Gelman 2014 as revised by Betancourt 2017,
"A Conceptual Introduction to Hamiltonian Monte Carlo", appendix A):

* the trajectory doubles, in a random direction each time, up to
  `max_tree_depth` doublings (1023 leapfrog steps at depth 10);
* a state is drawn from the trajectory with probability proportional to
  exp(-H) (multinomial): uniformly within a new subtree, and the new subtree's
  draw replaces the current one with probability min(1, W_new / W_old);
* it stops at a U-turn by the generalized criterion on the summed momenta rho:
  a (sub)tree turns when p#_minus . rho <= 0 or p#_plus . rho <= 0, with
  p# = M^-1 r at its two ends; every aligned subtree is checked, plus the two
  extra checks across merged halves that Stan added in 2.26;
* a subtree is invalid when any of its energy errors exceeds 1000 (NaN too):
  the iteration is `diverging` and stops.

How it runs on MLX. Host decisions are made once per doubling, never per
leaf. The directions and the multinomial uniforms of an iteration are drawn
on the host (a NumPy generator seeded from the run's key), so each new
subtree of 2^j leapfrog steps is known in advance and built as a lazy chain of
compiled leapfrog calls (the momentum is drawn from the step's key inside the
first one). One counted sync (`driver.host`) evaluates the chain; the tree
logic then runs in float64 on the host, on the leaves' momenta and log
densities: for a small subtree (n leaves in dimension d, n * (d + 6) < 128:
most of the benchmark models' subtrees) as Stan's recursion in plain Python
floats, stopping at the first failed check; for a larger one in NumPy, all
aligned subtrees checked at once (each check is a contiguous range of leaves,
so a prefix sum gives every rho) and the first leaf at which the recursion
would have stopped located after. Then the proposal is drawn and the subtree
merged (Python floats). The chosen draw and the trajectory's ends stay MLX arrays. The first
doublings of an iteration are built before its first sync when the previous
iteration went deep (its doublings less two): fewer syncs for a few gradients
wasted when the trajectory stops earlier. So syncs per iteration are at most
the doublings. The statistics are Stan's: `num_steps` counts the leapfrog
steps the recursive algorithm takes (its last subtree may stop early), while
`n_grad_evals` counts the gradients actually computed (a subtree is always
computed whole); `tree_depth` is the number of valid doublings and
`doublings` the number built. The gradients computed beyond `num_steps`
(the rest of a subtree that stopped early, speculative doublings after the
stop) are wasted: 0.5-3% of them on the benchmark models; the benchmark
charges their time to the steps used (cost per `num_steps`).

Tried and measured (CPU, 2 cores; benchmarks/test_bench_hmc_nuts.py), not
kept: (1) the whole doubling as one compiled MLX function per depth, the tree
bookkeeping (checks, multinomial draw, merge, masks after a stop) on the
device and one sync per doubling or per several: 2-3x slower per step than
this form, because each of the bookkeeping's ~100 small MLX operations costs
microseconds on the CPU (one doubling of 2 steps evaluated in 520 us against
2 x 68 us for the gradients), where NumPy on the host costs about 70 us per
subtree; (2) a subtree's leapfrog steps as one compiled call returning the
stacked leaves: 1.2-1.4x slower than the chain of compiled single steps.
Kept: the bookkeeping in Python floats below the size threshold (NumPy's
per-call cost, ~1-2 us, times ~30 calls per subtree, was most of it: 87 ->
20 us per iteration on regression100_vec), leaves read leaf by leaf
(`tolist`, 0.2 us each) rather than stacked in MLX (an extra graph node,
~15-30 us per evaluation) below 64 leaves, and warm-up adaptation on the host
(`adaptation.host_adapt`: the acceptance statistic and the draw are on the
host already; the lazy form cost a compiled call plus an evaluation per
iteration). Host time per iteration outside the syncs (graph building
included), fixed step size, same chain: 435 -> 215 us (regression100_vec,
12.6 steps), 623 -> 500 us (funnel_vec, 25 steps). Each `mx.eval` costs
~20 us of CPU and each graph node ~4 us on this CPU; a compiled leapfrog call
~10 us to build (the floor pays it too).

Warm-up (`burn`): dual averaging of the step size toward mean acceptance
statistic `target_accept` (0.8) and Stan's windowed diagonal mass matrix
(`adaptation`, its host form).
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from ..evaluation import evaluate
from ..memory import ResourceLimitExceeded
from ..tiered_compile import FusedFrom, tiered
from . import driver
from ._gradient import (check_fuse, check_int, check_positive, check_step_size, finish, initial_gradient, setup,
                        summarize)
from .adaptation import HostAdaptation, host_adapt, host_init_adaptation, schedule
from .hmc import DIVERGENCE, leapfrog

__all__ = ["nuts", "NUTSState", "Tree", "nuts_transition"]


class NUTSState(NamedTuple):
    z: mx.array
    logp: mx.array
    grad: mx.array
    adaptation: HostAdaptation
    i: int  # iterations done
    rng: np.random.Generator  # host draws (directions, multinomial uniforms), seeded from the run's key
    speculate: int  # doublings to build before the first sync (the last iteration's, less two)


_RANGES: dict = {}


def _subtree_checks(n: int):
    """The U-turn checks of a subtree of n = 2^j leaves, as contiguous leaf ranges.

    Stan's recursion checks every aligned block [a, e] when it completes (at
    leaf e): the block itself, and its halves extended by one leaf across the
    middle, [a, m] and [m - 1, e] (m: the first leaf of the second half). Each
    is the criterion on a range [lo, hi] with rho = sum of r over the range.
    Returns (lo, hi, e) index arrays, cached per n.
    """
    got = _RANGES.get(n)
    if got is None:
        lo, hi, end = [], [], []
        s = 2
        while s <= n:
            for a in range(0, n, s):
                e, m = a + s - 1, a + s // 2
                lo += [a, a, m - 1]
                hi += [e, m, e]
                end += [e, e, e]
            s *= 2
        got = _RANGES[n] = tuple(np.array(x, dtype=np.intp) for x in (lo, hi, end))
    return got


_mul, _add = operator.mul, operator.add


def _dot(a, b) -> float:
    return sum(map(_mul, a, b))


_INF = math.inf
_NP_FROM = 128  # a subtree of n leaves in dimension d is done in NumPy from n * (d + 6) = this on (measured)


def _exp(x: float) -> float:
    return math.exp(x) if x < 700.0 else _INF


def _ladd(a, b) -> list:
    return list(map(_add, a, b))


def _logaddexp(a: float, b: float) -> float:
    return max(a, b) + math.log1p(math.exp(-abs(a - b))) if a != b else a + _LOG2


_LOG2 = math.log(2.0)


class Tree:
    """The trajectory so far, on the host: its two ends, summed momentum, total weight, current draw.

    Leaf states stay MLX arrays (fed back to the leapfrog as they are). The
    weights and criteria are computed in float64 on the host: a subtree of n
    leaves in dimension d in plain Python floats (rows as lists) while
    n * (d + 6) < `_NP_FROM` (most iterations' subtrees: there a NumPy call
    costs more than the arithmetic), else in NumPy, vectorized over its
    aligned ranges (prefix sums of the momenta). The ends and the summed
    momentum are lists, or NumPy vectors in dimensions where even one leaf
    goes to NumPy.
    """

    __slots__ = ("ends", "rho", "log_w", "draw", "sum_metro", "n_steps", "diverging", "depth", "h0", "inv_mass",
                 "inv_mass_np", "cost", "vec_np")

    def __init__(self, r0, lp0: float, inv_mass):
        d = len(inv_mass)
        self.cost = d + 6
        self.vec_np = self.cost >= _NP_FROM
        self.inv_mass = inv_mass = [float(v) for v in inv_mass]
        self.inv_mass_np = np.array(inv_mass, dtype=np.float64)
        if self.vec_np:
            r0 = np.asarray(r0, dtype=np.float64).reshape(-1)
            p0 = r0 * self.inv_mass_np
            self.h0 = -float(lp0) + 0.5 * float(r0 @ p0)
        else:
            r0 = [float(v) for v in r0]
            p0 = list(map(_mul, r0, inv_mass))
            self.h0 = -float(lp0) + 0.5 * _dot(r0, p0)
        self.ends = ((r0, p0), (r0, p0))  # (r, p#) at the left and right ends
        self.rho = r0
        self.log_w = 0.0  # the initial point's weight exp(H0 - H0)
        self.draw = None
        self.sum_metro, self.n_steps, self.diverging, self.depth = 0.0, 0, False, 0

    def uses_numpy(self, n: int) -> bool:
        """Whether a subtree of n leaves is done in NumPy (its rows are then best fetched as one array)."""
        return n * self.cost >= _NP_FROM

    def _sub_py(self, r: list, lp: list):
        """Stan's recursion over the leaves in build order, in Python floats: (count of leaves taken, log
        weights, divergent) at the first divergent leaf or failed check; else (None, log weights, summed momentum,
        (r, p#) of the first leaf, (r, p#) of the last)."""
        h0, im = self.h0, self.inv_mass
        p = [list(map(_mul, x, im)) for x in r]
        log_w = []
        stack = []  # completed aligned blocks: (size, first leaf, rho)
        for e in range(len(r)):
            h = 0.5 * sum(map(_mul, r[e], p[e])) - lp[e]
            lw = h0 - h if h == h else -_INF  # a NaN energy: an infinite error
            log_w.append(lw)
            if -lw > DIVERGENCE:
                return e + 1, log_w, True
            rho, a, s = r[e], e, 1
            while stack and stack[-1][0] == s:
                _, a0, rho_l = stack.pop()
                m = a  # the first leaf of the right half
                rho_r = rho
                rho = list(map(_add, rho_l, rho_r))
                pa, pe = p[a0], p[e]
                e1 = list(map(_add, rho_l, r[m]))
                e2 = list(map(_add, r[m - 1], rho_r))
                if not (sum(map(_mul, pa, rho)) > 0 and sum(map(_mul, pe, rho)) > 0
                        and sum(map(_mul, pa, e1)) > 0 and sum(map(_mul, p[m], e1)) > 0
                        and sum(map(_mul, p[m - 1], e2)) > 0 and sum(map(_mul, pe, e2)) > 0):
                    return e + 1, log_w, False
                a, s = a0, 2 * s
            stack.append((s, a, rho))
        return None, log_w, stack[0][2], (r[0], p[0]), (r[-1], p[-1])

    def _sub_np(self, r, lp):
        """`_sub_py` in NumPy: the checks of all aligned ranges at once, the first failure located after."""
        r = np.asarray(r, dtype=np.float64)
        n = r.shape[0]
        p = r * self.inv_mass_np
        with np.errstate(invalid="ignore", over="ignore"):
            h = 0.5 * np.einsum("ij,ij->i", r, p) - np.asarray(lp, dtype=np.float64)
            h[np.isnan(h)] = np.inf
            log_w = self.h0 - h
            div = -log_w > DIVERGENCE
            fail = div.copy()
            if n > 1:
                lo, hi, end = _subtree_checks(n)
                c = np.concatenate([np.zeros((1, r.shape[1])), np.cumsum(r, axis=0)])
                rho = c[hi + 1] - c[lo]
                ok = (np.einsum("ij,ij->i", p[lo], rho) > 0) & (np.einsum("ij,ij->i", p[hi], rho) > 0)
                fail[end[~ok]] = True
        if fail.any():
            cnt = int(np.argmax(fail)) + 1
            return cnt, log_w[:cnt].tolist(), bool(div[cnt - 1])
        rho_sub = r.sum(axis=0)
        if self.vec_np:
            return None, log_w.tolist(), rho_sub, (r[0], p[0]), (r[-1], p[-1])
        (r0, r1), (p0, p1) = r[[0, -1]].tolist(), p[[0, -1]].tolist()
        return None, log_w.tolist(), rho_sub.tolist(), (r0, p0), (r1, p1)

    def add(self, forward: bool, leaves, r, lp, u_take: float, u_pick: float) -> bool:
        """Fold in a new subtree (MLX leaves (z, r, g, logp) in build order, with its momenta (rows) and log
        densities on the host: lists, or NumPy arrays); True when the trajectory must stop."""
        n = len(r)
        if self.uses_numpy(n):
            out = self._sub_np(r, lp)
        else:
            if isinstance(r, np.ndarray):
                r, lp = r.tolist(), np.asarray(lp).tolist()
            out = self._sub_py(r, lp)
        if out[0] is not None:  # an invalid subtree (divergent, or turning inside): its draw is not used
            cnt, log_w, div = out
            self.n_steps += cnt
            self.sum_metro += sum(_exp(min(x, 0.0)) for x in log_w[:cnt])
            self.diverging = self.diverging or div
            return True
        _, log_w, rho_sub, first, last = out
        self.n_steps += n
        self.sum_metro += sum(_exp(min(x, 0.0)) for x in log_w)
        top = max(log_w)
        cum = list(itertools.accumulate(_exp(x - top) for x in log_w))
        total = cum[-1]
        lw_sub = top + math.log(total)
        k = min(bisect.bisect_right(cum, u_pick * total), n - 1)
        (ol, orr), rho_old = self.ends, self.rho
        if forward:  # backward part (bl, br, rho_b), forward part (fl, fr, rho_f)
            bl, br, fl, fr, rho_b, rho_f = ol, orr, first, last, rho_old, rho_sub
        else:
            bl, br, fl, fr, rho_b, rho_f = last, first, ol, orr, rho_sub, rho_old
        vadd, vdot = (np.add, np.dot) if self.vec_np else (_ladd, _dot)
        rho = vadd(rho_b, rho_f)
        e1, e2 = vadd(rho_b, fl[0]), vadd(rho_f, br[0])
        persist = (vdot(bl[1], rho) > 0 and vdot(fr[1], rho) > 0 and vdot(bl[1], e1) > 0 and vdot(fl[1], e1) > 0
                   and vdot(br[1], e2) > 0 and vdot(fr[1], e2) > 0)
        if u_take <= 0.0 or math.log(u_take) < lw_sub - self.log_w:  # biased progressive sampling
            self.draw = (leaves[0][k], leaves[3][k], leaves[2][k])
        self.log_w = _logaddexp(self.log_w, lw_sub)
        self.rho = rho
        self.ends = (bl, fr)
        self.depth += 1
        return not persist


_STACK_FROM = 64  # from this many leaves, the momenta and log densities are stacked in MLX (one array each)


def _sync(x) -> bool:
    """One counted sync; True when evaluating raised (a LAPACK failure on a numerically singular
    matrix, say): the caller treats the subtree as divergent. The budget's error is never swallowed."""
    try:
        driver.host(x)
        return False
    except ResourceLimitExceeded:
        raise
    except RuntimeError:
        return True


def nuts_transition(value_and_grad, max_depth: int = 10, fuse: str = "auto"):
    """`transition(key, rng, z, logp, grad, step, inv_mass, speculate) -> (z, logp, grad, stats)`.

    One NUTS iteration. `rng` (a NumPy generator) draws the directions and the
    multinomial uniforms on the host, so every leapfrog chain is known before
    any sync; the momentum comes from `key` inside the first compiled
    leapfrog call. The first `speculate` doublings are built before the first
    sync (their leaves are wasted if the trajectory stops earlier); after
    that, one sync per doubling. `step` and `inv_mass` are MLX arrays, or a
    `HostAdaptation` passed as `step` (inv_mass None): its host copies then
    spare the conversions. `fuse`: how the leapfrog is compiled
    (`genmlx.tiered_compile` modes); `transition.tiered` are its tiered
    functions (for a `FusedFrom`).
    """
    step_fn = leapfrog(value_and_grad)
    lf = tiered(step_fn, fuse)

    def first(key, z, g, eps, inv_mass):
        r0 = mx.random.normal(z.shape, key=key) * mx.rsqrt(inv_mass)
        return (*step_fn(z, r0, g, eps, inv_mass), r0)

    first = tiered(first, fuse)

    def transition(key, rng, z, lp, g, step, inv_mass=None, speculate: int = 1):
        if inv_mass is None:  # a HostAdaptation
            pos, neg, im_mx, im_host = step.step_mx, step.neg_step_mx, step.inv_mass_mx, step.inv_mass
        else:
            pos, neg, im_mx, im_host = step, -step, inv_mass, None
        u = rng.random((3, max_depth)).tolist()
        dirs, u_take, u_pick = u
        ends = {}  # direction -> (z, r, g) at that end of the trajectory (MLX)
        tree = r0 = None
        grads = j = 0
        batch = max(1, min(speculate, max_depth))
        stop = False
        while not stop:
            built = []
            need = []
            for jj in range(j, min(j + batch, max_depth)):
                d = dirs[jj] < 0.5
                eps = pos if d else neg
                if jj == 0:
                    zc, rc, gc, lpc, r0 = first(key, z, g, eps, im_mx)
                    ends[True] = ends[False] = (z, r0, g)
                    leaves = ([zc], [rc], [gc], [lpc])
                    need += [rc, lpc, r0]
                else:
                    zc, rc, gc = ends[d]
                    zs, rs, gs, lps = leaves = ([], [], [], [])
                    for _ in range(1 << jj):
                        zc, rc, gc, lpc = lf(zc, rc, gc, eps, im_mx)
                        zs.append(zc)
                        rs.append(rc)
                        gs.append(gc)
                        lps.append(lpc)
                    if len(rs) >= _STACK_FROM:
                        fetch = (mx.stack(rs), mx.stack(lps))
                        need += fetch
                    else:
                        fetch = None
                        need += rs
                        need += lps
                ends[d] = (zc, rc, gc)
                grads += 1 << jj
                built.append((jj, d, leaves, fetch if jj else None))
            if tree is None:
                need += [lp]
                if im_host is None:
                    need.append(im_mx)
            failed = _sync(need)
            if tree is None:  # the first sync also brings the initial momentum
                if failed:
                    driver.host(r0)
                tree = Tree(r0.tolist(), lp.item(), im_mx.tolist() if im_host is None else im_host)
            if failed:  # the density raised on some leaf: one divergent leaf, as Stan does
                tree.n_steps += 1
                tree.diverging = True
                j = built[0][0] + 1
                break
            for jj, d, leaves, fetch in built:
                if fetch is not None:
                    r, lps = np.asarray(fetch[0]), np.asarray(fetch[1])
                elif tree.uses_numpy(1 << jj):
                    r, lps = np.stack([np.asarray(x) for x in leaves[1]]), [x.item() for x in leaves[3]]
                else:
                    r, lps = [x.tolist() for x in leaves[1]], [x.item() for x in leaves[3]]
                stop = tree.add(d, leaves, r, lps, u_take[jj], u_pick[jj])
                if stop:
                    break
            j = built[-1][0] + 1
            stop = stop or j >= max_depth
            batch = 1
        stats = {"accepted": tree.draw is not None, "accept_prob": tree.sum_metro / tree.n_steps,
                 "num_steps": tree.n_steps, "diverging": tree.diverging, "tree_depth": tree.depth,
                 "n_grad_evals": grads, "doublings": j}
        if tree.draw is None:
            return z, lp, g, stats
        return (*tree.draw, stats)

    transition.tiered = (lf, first)
    return transition


def nuts(model, args: tuple, observations=None, *, addresses, n_samples: int, burn: int = 0, thin: int = 1,
         step_size: float = 0.1, max_tree_depth: int = 10, adapt_step_size: bool = True, adapt_mass: bool = True,
         target_accept: float = 0.8, key=None, init=None, callback=None, progress=None, fuse: str = "auto"):
    """NUTS over `addresses` (continuous choices; constrained ones through `transforms`).

    Args:
        model, args, observations: the target is p(addresses | observations);
            every other choice of the model must be observed.
        addresses: the list of addresses to sample.
        n_samples, burn, thin: keep every `thin`-th of `n_samples * thin`
            iterations after `burn` warm-up iterations.
        step_size: the initial step size (> 0), adapted during burn-in when
            `adapt_step_size` (with burn=0 it stays fixed).
        max_tree_depth: the most doublings per iteration (>= 1; Stan's 10).
        adapt_mass: adapt a diagonal mass matrix during burn-in (Stan's windows).
        key: an MLX key (same key, same chain, bit for bit; on a CUDA GPU
            whose kernels are being built, with `fuse="fused"`).
        init: {address: value} starting point (default: a draw from the model).
        callback: `callback(step, state, stats)` after each iteration.
        fuse: how the leapfrog is compiled (`genmlx.tiered_compile`): "auto"
            (default) fuses it, except on a CUDA GPU that has not built its
            kernels yet (NVRTC, ~3.5 s a kernel, once per machine): there it
            runs unfused while a background process builds them, and fused
            from the iteration after they are built. "fused" always fuses
            (the same key gives the same chain bit for bit whatever the
            machine's kernel cache holds), "unfused" never does.

    Returns:
        `InferenceResult`: `.traces`; `.stats` per iteration `accepted` (the
        draw moved), `accept_prob` (mean acceptance statistic over the
        trajectory), `step_size`, `num_steps`, `n_grad_evals`, `tree_depth`,
        `diverging`; `acceptance_rate` (mean `accept_prob` after burn-in),
        `divergences`, `final_step_size`, `inv_mass`, `ess_bulk`, `ess_tail`,
        `r_hat` by address; `syncs`, `syncs_per_iteration` (one per doubling);
        `fused_from` (a tiered leapfrog only, see `fuse`): the first iteration
        of this call run fused (None: none).

    Raises:
        ValueError: step_size <= 0, max_tree_depth < 1, an unknown, observed or
            discrete address, a latent choice neither listed nor observed.
    """
    alg = "nuts"
    n_samples = check_int(alg, "n_samples", n_samples, 0)
    burn = check_int(alg, "burn", burn, 0)
    thin = check_int(alg, "thin", thin, 1)
    step_size = check_step_size(alg, step_size)
    if isinstance(max_tree_depth, bool) or not hasattr(max_tree_depth, "__index__") or max_tree_depth < 1:
        raise ValueError(f"nuts: max_tree_depth must be an int >= 1, got {max_tree_depth!r}")
    target = check_positive(alg, "target_accept", target_accept, 1.0)
    check_fuse(alg, fuse)
    s = setup(alg, model, args, observations, addresses, key, init)
    vg = mx.value_and_grad(s.logp)
    transition = nuts_transition(vg, int(max_tree_depth), fuse)
    fused = FusedFrom(transition.tiered)
    lp0, g0 = initial_gradient(vg, s.z0)
    evaluate(lp0, g0)
    plan = schedule(burn, adapt_step_size, adapt_mass, target)
    rng = np.random.default_rng(np.asarray(s.aux_key).tolist())
    state = NUTSState(s.z0, lp0, g0, host_init_adaptation(step_size, s.logp.dim), 0, rng, 1)

    def step(k, st: NUTSState):
        a = st.adaptation
        z, lp, g, stats = transition(k, st.rng, st.z, st.logp, st.grad, a, None, st.speculate)
        fused.after(st.i)
        a2 = host_adapt(a, plan, st.i, z, stats["accept_prob"]) if st.i < burn else a
        return driver.Step(NUTSState(z, lp, g, a2, st.i + 1, st.rng, max(1, stats["doublings"] - 2)), z,
                           {**stats, "step_size": a.step_size})

    res = driver.run(step, state, burn + n_samples * thin, algorithm=alg, model=model.name, key=s.key,
                     params={"n_samples": n_samples, "burn": burn, "thin": thin, "step_size": step_size,
                             "max_tree_depth": int(max_tree_depth)},
                     burn=burn, thin=thin, callback=callback, progress=progress,
                     summarize=summarize("accept_prob"))
    a = res.state.adaptation
    return finish(res, model, args, s.logp.layout, burn=burn, n_samples=n_samples, thin=thin,
                  acceptance="accept_prob",
                  extra={"final_step_size": a.step_size, "inv_mass": list(a.inv_mass),
                         **fused.stats()})
