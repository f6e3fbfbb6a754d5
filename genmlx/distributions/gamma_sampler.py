"""Vectorized Marsaglia-Tsang gamma sampling: fixed rounds, fused, in log space.

Marsaglia & Tsang (2000) draw Gamma(a), a >= 1, by proposing d (1 + c z)^3
with z ~ N(0, 1), d = a - 1/3, c = 1/sqrt(9 d), and accepting when
log u < z^2/2 + d - d v + d log v (u ~ U(0, 1), v = (1 + c z)^3 > 0). Shapes
below 2 are boosted: Gamma(a) = Gamma(a + 1) U^(1/a), applied once for
1 <= a < 2 and twice for a < 1, so every proposal runs at a shape >= 2, where
one round rejects with probability at most 0.0184 (the rejection rate falls
like 0.037 / a; computed by quadrature, and checked in the tests).

Rounds are fixed (`rounds_for`): enough that a lane rejects in every round
with probability <= `FAIL_PROB` (2e-7), four rounds at most. A batch of at
least `COMPACT_MIN` draws runs round 1 for every lane and the later rounds
only for the lanes round 1 rejected (about 2%, gathered by a cumulative sum:
no host sync), which cuts the random bits and the work by about 3x; a batch
drawn lane by lane under `mx.vmap` runs every round for every lane. A lane that
rejects in every round takes the last proposal (an approximate Gamma draw),
so the sampler's total-variation bias is at most that failure probability;
`log_gamma_draw(..., with_ok=True)` reports the lanes, and `exact=True` on a
distribution's `sample` redraws them (one counted sync per extra round).

Speed: one `RandomBits` call supplies every uniform (2 per round, plus one for
a double boost: the accepted round's uniform is recycled as the first boost
uniform, since u / min(1, e^L) is U(0, 1) given acceptance and independent of
the accepted value); normals come from Giles' erfinv polynomial inside the
fused kernel instead of MLX's slower `erfinv`; results stay in log space, so
Beta and Dirichlet draws with shapes like 1e-3 neither underflow nor divide
0 by 0. Beta's two gammas are one draw of two (`log_gamma_pair`): one sampler
pass instead of two, the cost that dominates an MH step proposing a Beta site.
"""

from __future__ import annotations

import functools
import math

import mlx.core as mx

from ..evaluation import evaluate
from ..rng import lanewise, shared_lanes
from ..special.fuse import compiled
from ..special.normal import std_normal_from_uniform
from .base import shape_of

__all__ = ["FAIL_PROB", "rounds_for", "reject_prob_bound", "q_bucket", "log_gamma_draw", "log_gamma_pair", "beta_draw",
           "gamma_full", "open_uniform", "other_key", "capacity"]

FAIL_PROB = 2e-7
MAX_ROUNDS = 4
_THIRD = 1.0 / 3.0


def reject_prob_bound(a: float) -> float:
    """Upper bound of one Marsaglia-Tsang round's rejection probability at shape a >= 2."""
    return 0.037 / a


def q_bucket(q: float) -> float:
    """`q` rounded up to a bound of the form `reject_prob_bound(2 ** j)`: the lane functions are cached
    by their q, and a few buckets keep that cache small whatever shapes a model uses (q only sizes
    the vmap rule's second-stage capacity, never the numbers drawn)."""
    j = max(0, math.floor(math.log2(reject_prob_bound(1.0) / q)))
    return reject_prob_bound(2.0 ** j)


def rounds_for(a: float | None) -> int:
    """Rounds giving per-lane failure <= FAIL_PROB at (boosted) shape a; None: the worst case."""
    if a is None:
        return MAX_ROUNDS
    q = reject_prob_bound(max(a, 2.0))
    k = 1
    while q ** k > FAIL_PROB:
        k += 1
    return max(2, min(k, MAX_ROUNDS))


def open_uniform(u):
    """Map [0, 1) uniforms to (0, 1) (so log u and 1 - u are finite)."""
    return u * (1.0 - 2.0 ** -24) + 2.0 ** -25


@compiled
def _uniforms(key, shape):
    return open_uniform(mx.random.uniform(shape=shape, key=key))  # bits + one fused conversion


_normals = compiled(std_normal_from_uniform)


@compiled
def _prep(a, boost):
    lvl = mx.where(a < 1.0, 2.0, mx.where(a < 2.0, 1.0, 0.0)) if boost < 0 else boost
    d = (a + lvl) - _THIRD
    return d, mx.rsqrt(9.0 * d)


@compiled
def _accept(z, u, d, c):
    """Per round: log u < z^2/2 + d - d v + d log v with v = (1 + c z)^3 > 0; returns L - log u."""
    v = 1.0 + c * z
    pos = v > 0
    lv = 3.0 * mx.log(mx.where(pos, v, 1.0))
    margin = ((0.5 * z * z + d) - (d * (v * v * v) - d * lv)) - mx.log(u)
    return mx.where(pos, margin, -mx.inf)


@compiled
def _finish(z, margin, ub, a, d, c, boost):
    """log(d v) of the chosen round, times the boost factors U^(1/a) (in log space)."""
    v = 1.0 + c * z
    logg = mx.log(d) + 3.0 * mx.log(mx.where(v > 0, v, 1.0))
    if boost == 0:
        return logg
    # the accepted round's uniform, rescaled: log u - L = -margin, U(0, 1) given acceptance
    lu1 = mx.minimum(-margin, 0.0)
    lu2 = mx.log(ub)
    if boost == 1:
        return logg + lu1 / a
    if boost == 2:
        return logg + (lu1 / (a + 1.0) + lu2 / a)
    lvl = mx.where(a < 1.0, 2.0, mx.where(a < 2.0, 1.0, 0.0))
    one = lu1 / mx.where(lvl == 2.0, a + 1.0, a)
    return logg + (mx.where(lvl > 0, one, 0.0) + mx.where(lvl == 2.0, lu2 / a, 0.0))


def _select_rounds(z, margin, k):
    """First accepting round of each lane (margin > 0), else the last proposal: (z, margin, ok).
    `ok` is lazy: nothing computes it unless the caller evaluates it."""
    if k == 1:
        return z[0], margin[0], margin[0] > 0
    pick = _first_accepting(margin, _last_round(k, margin.ndim))
    return (mx.take_along_axis(z, pick, axis=0)[0], mx.take_along_axis(margin, pick, axis=0)[0],
            mx.any(margin > 0, axis=0))


@compiled
def _first_accepting(margin, last):
    """The first round with margin > 0, the last round counting as accepting (all rejected: the last,
    see FAIL_PROB). logical_or, not `|`: MLX 0.32's vmap of bitwise_or with an unbatched operand
    gives wrong lanes."""
    return mx.argmax(mx.logical_or(margin > 0, last), axis=0, keepdims=True)


@functools.lru_cache(maxsize=None)
def _last_round(k: int, ndim: int) -> mx.array:
    """[k, 1, ...]: True at round k - 1 (a constant; evaluated once)."""
    x = (mx.arange(k) == k - 1).reshape((k,) + (1,) * (ndim - 1))
    evaluate(x)
    return x


def _draw(key, a, shape, rounds, boost):
    """Fixed rounds for every lane: one vectorized pass (the path under mx.vmap and for small batches)."""
    k = rounds
    n_u = 2 * k + (1 if boost in (-1, 2) else 0)
    u = lanewise(_uniforms, key, (n_u,) + tuple(shape))
    return _draw_from(u, a, rounds, boost)


def _draw_from(u, a, rounds, boost):
    k = rounds
    n_u = u.shape[0]
    d, c = _prep(a, boost)
    z = _normals(u[:k])
    z1, m1, ok = _select_rounds(z, _accept(z, u[k:2 * k], d, c), k)
    ub = u[n_u - 1] if n_u > 2 * k else u[0]
    return _finish(z1, m1, ub, a, d, c, boost), ok


COMPACT_MIN = 256  # batches at least this large draw their later rounds only for the lanes that need them


def capacity(m: int, q: float) -> int:
    """Lanes reserved for the second stage: the expected failures plus 10 standard deviations and 32.

    Not clipped to m: for small batches a few idle slots cost less than a stage shape equal to the
    batch's (whose compiled kernels would then be shared between stages, which confuses graph
    counts keyed on primitive ids)."""
    mean = m * q
    return int(math.ceil(mean + 10.0 * math.sqrt(mean + 1.0) + 32))


def _compact(fail, m: int, cap: int):
    """The failing lanes numbered by a cumulative sum and gathered into `cap` slots (no host sync).

    Returns (lanes: the lane index of each slot, use2: lanes that got a slot,
    back: each lane's slot, for gathering the slots' results back).
    """
    rank = mx.cumsum(fail.astype(mx.int32)) - 1
    use2 = fail & (rank < cap)
    lanes = mx.zeros((cap + 1,), dtype=mx.int32).at[mx.where(use2, rank, cap)].add(mx.arange(m, dtype=mx.int32))[:cap]
    return lanes, use2, mx.minimum(rank, cap - 1)


def _draw_compact(key, a, shape, rounds, boost, q, pick=None):
    """Round 1 for every lane, rounds 2..K only for the lanes round 1 rejected (gathered, no host sync).

    The failing lanes are numbered by a cumulative sum and gathered into `capacity(M, q)`
    slots; each slot runs K - 1 fresh rounds. Slot assignment depends only on which lanes
    failed, never on the stage-2 draws, so every lane still gets i.i.d. proposals until its
    first acceptance: exact. Lanes beyond the capacity keep their round-1 proposal (the
    fallback) - probability below 1e-20 at these capacities.

    `pick = (n, cols)`: round 1 takes columns `cols` of an n-column draw (the
    shared-key lanes of `_shared_fn`); `shape` is then `(len(cols),)`.
    """
    shape = tuple(shape)
    m = 1
    for n in shape:
        m *= n
    k1, k2 = mx.random.split(key)
    extra = 1 if boost in (-1, 2) else 0
    if pick is None:
        u = lanewise(_uniforms, k1, (2 + extra, m))
    else:
        u = _uniforms(k1, (2 + extra, pick[0]))[:, pick[1]]
    a_flat = mx.broadcast_to(a, shape).reshape(m) if a.ndim else a
    d, c = _prep(a_flat, boost)
    z = _normals(u[0])
    margin = _accept(z, u[1], d, c)
    fail = margin <= 0
    cap = capacity(m, q)
    lanes, use2, back = _compact(fail, m, cap)
    d2, c2 = (d[lanes], c[lanes]) if d.ndim else (d, c)
    k = rounds - 1
    u2 = lanewise(_uniforms, k2, (2 * k, cap)) if pick is None else _uniforms(k2, (2 * k, cap))
    z2 = _normals(u2[:k])
    z2s, m2s, ok2 = _select_rounds(z2, _accept(z2, u2[k:], d2, c2), k)
    zf = mx.where(use2, z2s[back], z)
    mf = mx.where(use2, m2s[back], margin)
    ok = mx.where(use2, ok2[back], ~fail)
    ub = u[2] if extra else u[0]
    logg = _finish(zf, mf, ub, a_flat, d, c, boost)
    return logg.reshape(shape), ok.reshape(shape)


# -- one draw per lane: the path of scalar sites, compacted across lanes under mx.vmap ------------


def _lane_fn(rounds: int, boost: int, q: float, m: int | None = None):
    """A custom function drawing one log-Gamma(a) value (`m` None) or m of them (`a`: [m]; Beta's
    two gammas) from (key, a), with a vmap rule.

    Scalar semantics (also what each lane of a vmapped call equals, bit for bit): round 1
    from uniforms(key), rounds 2..K from uniforms(key + a constant) - a second, independent
    threefry key without a split (which would cost one more hash per lane); the first
    accepting round wins, else round K. The call runs the K rounds as one batch (rows of the
    two draws). Under `mx.vmap` the rule runs round 1 for every lane (and gamma) and rounds
    2..K only for those round 1 rejected, each from its own lane's second key - the same
    numbers the scalar call draws, at a third of the work (lanes beyond `capacity` slots, with
    probability below 1e-20, keep their round-1 proposal).
    """
    q = q_bucket(q)
    fkey = (rounds, boost, q, m)
    f = _LANES.get(fkey)
    if f is not None:
        return f
    extra = 1 if boost in (-1, 2) else 0
    k = rounds
    n1 = 2 + extra
    tail = () if m is None else (m,)
    width = 1 if m is None else m
    # rows of [u1; u2] holding each round's normal and accept uniforms
    z_rows = mx.array([0] + [n1 + j for j in range(k - 1)])
    a_rows = mx.array([1] + [n1 + k - 1 + j for j in range(k - 1)])

    @mx.custom_function
    def lane(key, a):
        u = mx.concatenate([_uniforms(key, (n1,) + tail), _uniforms(_second_key(key), (2 * (k - 1),) + tail)])
        d, c = _prep(a, boost)
        z = _normals(u[z_rows])
        zf, mf, _ = _select_rounds(z, _accept(z, u[a_rows], d, c), k)
        return _finish(zf, mf, u[2] if extra else u[0], a, d, c, boost)

    @lane.vmap
    def lane_vmap(inputs, axes):
        key, a = inputs
        ka, aa = axes
        if ka is None:  # the same key for every lane: nothing to compact
            a0 = mx.moveaxis(a, aa, 0)
            return mx.stack([lane(key, a0[i]) for i in range(a0.shape[0])]), 0
        keys = mx.moveaxis(key, ka, 0)
        n = keys.shape[0]
        ab = mx.broadcast_to(mx.moveaxis(a, aa, 0) if aa is not None else a, (n,) + tail).reshape(n * width)
        # round 1 for every (lane, gamma), flattened as lane * width + gamma
        u1 = mx.vmap(lambda kk: _uniforms(kk, (n1,) + tail))(keys)  # [n, n1, *tail]
        u1 = mx.moveaxis(u1, 1, 0).reshape(n1, n * width)
        d, c = _prep(ab, boost)
        z1 = _normals(u1[0])
        m1 = _accept(z1, u1[1], d, c)
        fail = m1 <= 0
        cap = capacity(n * width, q)
        slots, use2, back = _compact(fail, n * width, cap)
        owner = slots if m is None else slots // m
        u2 = mx.vmap(lambda kk: _uniforms(kk, (2 * (k - 1),) + tail))(_second_key(keys[owner]))
        if m is not None:  # [cap, 2(K-1), m]: each slot's own gamma
            u2 = mx.take_along_axis(u2, (slots % m)[:, None, None], axis=2)[:, :, 0]
        u2 = u2.T  # [2(K-1), cap]
        z2 = _normals(u2[: k - 1])
        zs, ms, _ = _select_rounds(z2, _accept(z2, u2[k - 1:], d[slots], c[slots]), k - 1)
        z = mx.where(use2, zs[back], z1)
        mm = mx.where(use2, ms[back], m1)
        return _finish(z, mm, u1[2] if extra else u1[0], ab, d, c, boost).reshape((n,) + tail), 0

    _LANES[fkey] = lane
    return lane


_LANES: dict = {}


def log_gamma_pair(key, a, b, shape: tuple = ()):
    """log Gamma(a) and log Gamma(b) draws of shape `shape` (a, b: floats or 0-d arrays) from one key:
    Beta's draw. One sampler pass over both (a trailing axis of two): half the primitives of two
    draws. A single draw (`shape == ()`) is one lane (`_lane_fn`, compacted under `mx.vmap`)."""
    boost, k, q, ab = _pair_setup(a, b)
    shape = tuple(shape)
    if shape == ():
        g = _lane_fn(k, boost, q, 2)(key, ab)
    else:
        full = shape + (2,)
        size = 2 * math.prod(shape)
        if size == 0:
            g = mx.zeros(full)
        elif size >= COMPACT_MIN:
            g = _draw_compact(key, mx.broadcast_to(ab, full), full, k, boost, q)[0]
        else:
            g = _draw(key, mx.broadcast_to(ab, full), full, k, boost)[0]
    return g[..., 0], g[..., 1]


def beta_draw(key, a, b) -> mx.array:
    """One Beta(a, b) draw, sigmoid(log G_a - log G_b) of `log_gamma_pair`'s single lane, as one
    compiled call: the same numbers and primitives, but the graph is replayed from the compiled tape
    instead of built by ~20 Python calls (an eager draw, as dynamic MH makes one per iteration, costs
    15-20% less here)."""
    boost, k, q, ab = _pair_setup(a, b)
    return _beta_lane(k, boost, q)(key, ab)


@functools.lru_cache(maxsize=None)  # keys: rounds <= MAX_ROUNDS, 4 boosts, a few q buckets
def _beta_lane(k: int, boost: int, q: float):
    lane = _lane_fn(k, boost, q, 2)

    @compiled
    def draw(key, ab):
        g = lane(key, ab)
        return mx.sigmoid(g[0] - g[1])

    return draw


def _pair_setup(a, b):
    """(boost, rounds, q, [a, b] as an array) of a two-gamma draw."""
    if isinstance(a, mx.array) or isinstance(b, mx.array):
        return -1, MAX_ROUNDS, reject_prob_bound(2.0), mx.stack([mx.asarray(x).astype(mx.float32) for x in (a, b)])
    a, b = float(a), float(b)
    # a fresh array per draw: a cache of arrays would hold live arrays that a leak gate counts
    return (*_float_pair_plan(a, b), mx.array([a, b], dtype=mx.float32))


@functools.lru_cache(maxsize=1024)  # a model builds its Beta afresh every execution, mostly with the same shapes
def _float_pair_plan(a: float, b: float) -> tuple:
    ba, bb = (2 if x < 1.0 else (1 if x < 2.0 else 0) for x in (a, b))
    boost = ba if ba == bb else -1  # -1: the kernel decides each one's boost
    k = max(rounds_for(a + ba), rounds_for(b + bb))
    return boost, k, q_bucket(reject_prob_bound(max(min(a + ba, b + bb), 2.0)))


def _shared_fn(rounds: int, boost: int, q: float, n: int):
    """One log-Gamma(a) draw per lane of a shared-key pass of N = n lanes: `f(key, lane, a)`.

    Scalar semantics: every round for the lane, from row `lane` of (n, rounds) uniforms drawn
    from `key` (`rng.lanewise`). Under `mx.vmap` over the lane index with one shared key (the
    shared-key layout) the rule draws as `_draw_compact` does for an [n] batch: round 1 for
    every lane (column `lane` of one (3, n) draw), the later rounds only for the lanes round 1
    rejected - the random bits and the work of the plain `log_gamma_draw(key, a, (n,))`.
    Other batchings (a nested `gm.vmap`'s inner lanes) run the scalar semantics per lane.
    """
    q = q_bucket(q)
    fkey = ("shared", rounds, boost, q, n)
    f = _LANES.get(fkey)
    if f is not None:
        return f
    n_u = 2 * rounds + (1 if boost in (-1, 2) else 0)

    def plain(key, lane, a):
        return _draw_from(_uniforms(key, (n, n_u))[lane], a, rounds, boost)[0]

    @mx.custom_function
    def draw(key, lane, a):
        return plain(key, lane, a)

    @draw.vmap
    def draw_vmap(inputs, axes):
        key, lane, a = inputs
        ka, la, aa = axes
        if ka is not None or la is None or lane.ndim != 1:
            return mx.vmap(plain, in_axes=(ka, la, aa))(key, lane, a), 0
        m = lane.shape[0]
        ab = mx.moveaxis(a, aa, 0) if aa is not None else a
        # every lane of the pass (lane = arange(n), see rng._pick_row): the plain [n] draw, no gather
        logg, _ = _draw_compact(key, ab, (m,), rounds, boost, q, pick=None if m == n and la == 0 else (n, lane))
        return logg, 0

    _LANES[fkey] = draw
    return draw
_SECOND = mx.array([0x9E3779B9, 0x7F4A7C15], dtype=mx.uint32)


def _second_key(key):
    """An independent key for rounds 2..K: key + a constant (mod 2^32), a different threefry key.

    Not XOR: MLX 0.32's vmap of bitwise_xor with an unbatched operand gives wrong lanes."""
    return key + _SECOND


_OTHER = mx.array([0x85EBCA6B, 0xC2B2AE35], dtype=mx.uint32)


def other_key(key):
    """A second independent key derived from `key` without a split (one hash less per lane under vmap).

    Distinct from `key`, from the sampler's own rounds-2..K key and from that key's own
    derivation (the added constants and their sum differ pairwise)."""
    return key + _OTHER


def log_gamma_draw(key, a, shape: tuple = (), *, rounds: int | None = None, with_ok: bool = False):
    """log of Gamma(a, rate 1) draws of shape `shape + a.shape` (a > 0; float or array).

    Python-number shapes choose the boost and the rounds on the host; arrays
    take the general kernel (boost decided per lane, `MAX_ROUNDS` rounds).
    With `with_ok`, also returns a bool array: False marks a fallback lane.
    """
    if isinstance(a, mx.array):
        boost = -1
        k = rounds or MAX_ROUNDS
        arr = a if mx.issubdtype(a.dtype, mx.floating) else a.astype(mx.float32)
    else:
        a = float(a)
        boost = 2 if a < 1.0 else (1 if a < 2.0 else 0)
        k = rounds or rounds_for(a + boost)
        arr = mx.array(a, dtype=mx.float32)
    full = tuple(shape) + shape_of(a)
    size = 1
    for n in full:
        size *= n
    if size == 0:  # an empty batch: nothing to draw (MLX cannot argmax a zero-size axis)
        logg = mx.zeros(full)
        return (logg, mx.ones(full, dtype=mx.bool_)) if with_ok else logg
    if full == () and k > 1 and not with_ok:
        q = reject_prob_bound(2.0) if boost < 0 else reject_prob_bound(max(a + boost, 2.0))
        lanes = shared_lanes()
        if lanes is not None:
            return _shared_fn(k, boost, q, lanes[0])(key, lanes[1], arr)
        return _lane_fn(k, boost, q)(key, arr)
    if size >= COMPACT_MIN and k > 1:
        q = reject_prob_bound(2.0) if boost < 0 else reject_prob_bound(max(a + boost, 2.0))
        logg, ok = _draw_compact(key, arr, full, k, boost, q)
    else:
        logg, ok = _draw(key, arr, full, k, boost)
    return (logg, ok) if with_ok else logg


def gamma_full(key, a, shape: tuple, full: tuple) -> mx.array:
    """log Gamma(a) draws of exactly `full` = shape + batch shape (a broadcast to the batch)."""
    if isinstance(a, mx.array):
        batch = full[len(shape):]
        if tuple(a.shape) != batch:
            a = mx.broadcast_to(a, batch)
        return log_gamma_draw(key, a, shape)
    return log_gamma_draw(key, a, full)


def rejection_rate(a: float, n: int = 1_000_000, key=None) -> float:
    """Empirical one-round rejection rate at shape a (for tests and docs)."""
    key = mx.random.key(0) if key is None else key
    _, ok = log_gamma_draw(key, float(a), (n,), rounds=1, with_ok=True)
    return 1.0 - mx.mean(ok.astype(mx.float32)).item()
