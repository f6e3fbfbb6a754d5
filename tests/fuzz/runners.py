"""Worker-side runners: one function per kind of entry point (see entries.py)."""

from __future__ import annotations

import mlx.core as mx

import genmlx as gm
from genmlx import dist
from genmlx import inference as infer

from .entries import all_finite, finite_or_neg_inf
from .specs import decode, has_array, make_selection

KEY = mx.random.key(0)


def _verdict(*problems):
    bad = [p for p in problems if p]
    return ("nonfinite", bad[0]) if bad else ("result", "")


# -- distributions -------------------------------------------------------------------------------

def dist_(name, spec):
    params = [decode(p) for p in spec]
    d = getattr(dist, name)(*params)
    if any(has_array(p) for p in spec):
        d.validate()  # the contract for array parameters: checked at materialization or by validate()
    x = d.sample(key=KEY, shape=(3,))
    lp = d.log_prob(x)
    mx.eval(x, lp)

    @gm.gen
    def model():
        return gm.trace("site", d)

    tr = gm.memory.materialize(model.simulate((), key=KEY))
    tr2, w = model.generate((), {"site": tr["site"]}, key=KEY)
    gm.memory.materialize((tr2, w))
    return _verdict(all_finite(x) if name != "delta" else None, finite_or_neg_inf(lp, tr.score, w))


def dist_combinator(what, spec):
    kind, n, vals = spec
    base = dist.normal(0.0, 1.0)
    if kind == "mixture":
        d = dist.mixture([base, dist.normal(decode(vals[0]) if vals else 1.0, 2.0)], decode(vals) if vals else [])
    elif kind == "product":
        d = dist.product(*[dist.normal(decode(v), 1.0) for v in vals])
    else:
        d = dist.iid(base, n)
    d.validate()
    x = d.sample(key=KEY)
    lp = d.log_prob(x)
    mx.eval(x, lp)
    return _verdict(all_finite(x), finite_or_neg_inf(lp))


# -- the GFI on a fixed model ----------------------------------------------------------------------

@gm.gen
def _sub(mu):
    return gm.trace("x", dist.normal(mu, 1.0))


@gm.gen
def _model():
    x = gm.trace("x", dist.normal(0.0, 1.0))
    gm.trace("sub", _sub, x)
    gm.trace("y", dist.normal(x, 0.5))
    gm.trace("z", dist.bernoulli(0.3))
    return x


def gfi(op, spec):
    cons, sel, val = spec
    cm = {k: decode(v) for k, v in cons.items()} if isinstance(cons, dict) else cons
    tr = _model.simulate((), key=KEY)
    if op == "simulate":
        out = _model.simulate(decode(val) if isinstance(val, list) else (), key=KEY)
        return _verdict(finite_or_neg_inf(gm.memory.materialize(out).score))
    if op == "generate":
        t, w = _model.generate((), cm, key=KEY)
        gm.memory.materialize((t, w))
        return _verdict(finite_or_neg_inf(t.score, w))
    if op == "update":
        t, w, d = _model.update(tr, cm, key=KEY)
        gm.memory.materialize((t, w, d))
        return _verdict(finite_or_neg_inf(t.score, w))
    if op == "regenerate":
        t, w = _model.regenerate(tr, make_selection(sel), key=KEY)
        gm.memory.materialize((t, w))
        return _verdict(finite_or_neg_inf(t.score, w))
    if op == "assess":
        s, _ = _model.assess((), cm)
        mx.eval(s)
        return _verdict(finite_or_neg_inf(s))
    w = _model.project(tr, make_selection(sel))
    mx.eval(w)
    return _verdict(finite_or_neg_inf(w))


# -- a user's bare calls, read raw ----------------------------------------------------------------

@gm.gen
def _scaled(mu, s):
    x = gm.trace("x", dist.normal(mu, s))
    gm.trace("y", dist.normal(x, 1.0))
    return x


def bare(op, spec):
    """A bare public call with generated parameters (arrays of any dtype and shape, numbers, junk), its
    result read as a user reads it: `np.asarray` of the returned arrays, never `gm.memory.materialize`."""
    mu, s, v = (decode(p) for p in spec)
    args = (mu, s)
    if op == "simulate":
        out = [_scaled.simulate(args, key=KEY).get_score()]
    elif op == "generate":
        t, w = _scaled.generate(args, {"y": 0.5}, key=KEY)
        out = [w, t.get_score()]
    elif op == "update":
        t, w, _ = _scaled.update(_scaled.simulate((0.0, 1.0), key=KEY), {"x": v}, args=args, key=KEY)
        out = [w, t.get_score()]
    elif op == "regenerate":
        t, w = _scaled.regenerate(_scaled.simulate((0.0, 1.0), key=KEY), gm.select("x"), args=args, key=KEY)
        out = [w, t.get_score()]
    elif op == "assess":
        out = [_scaled.assess(args, {"x": v, "y": 0.5})[0]]
    elif op == "project":
        out = [_scaled.project(_scaled.simulate(args, key=KEY), gm.select("x", "y"))]
    elif op == "propose":
        out = [_scaled.propose(args, key=KEY)[1]]
    else:
        d = dist.normal(mu, s)
        x = d.sample(key=KEY)
        lp = d.log_prob(v)
        if isinstance(v, mx.array) and mx.any(mx.isnan(v.astype(mx.float32))).item():
            lp = None  # elementwise, NaN in, NaN out (docs/distributions.md): the NaN is the caller's own
        return _verdict(all_finite(x), finite_or_neg_inf(lp, d.log_prob(x)))
    return _verdict(finite_or_neg_inf(*out))


# -- combinators ---------------------------------------------------------------------------------

@gm.gen
def _kern(x):
    return gm.trace("y", dist.normal(x, 1.0))


@gm.gen
def _step(t, c):
    return gm.trace("y", dist.normal(c, 1.0))


@gm.gen
def _scan_k(c, x):
    y = gm.trace("y", dist.normal(c + x, 1.0))
    return y, y


@gm.gen
def _tree(depth):
    v = gm.trace("v", dist.normal(0.0, 1.0))
    return v, ([(depth - 1,)] if isinstance(depth, int) and depth > 0 else [])


def combinator(name, spec):
    n, p, xs, idx = spec
    arg, items = decode(p), [decode(x) for x in xs]
    if name == "map_":
        gf, args = gm.map_(_kern), (items,)
    elif name == "unfold":
        gf, args = gm.unfold(_step), (n, arg)
    elif name == "switch":
        gf, args = gm.switch(_kern, dist.normal(0.0, 1.0), gm.map_(_kern)), (idx, arg)
    elif name == "vmap":
        gf, args = gm.vmap(_kern), (arg if isinstance(arg, mx.array) else mx.array(items) if items else arg,)
    elif name == "scan":
        gf, args = gm.scan(_scan_k), (arg, items)
    elif name == "mix":
        gf, args = gm.mix([_kern, _kern], items), (arg,)
    elif name == "mask":
        gf, args = gm.mask(_kern), (idx, arg)
    else:
        gf, args = gm.recurse(_tree, max_depth=8), (n,)
    tr = gm.memory.materialize(gf.simulate(args, key=KEY))
    new, w, _ = gf.update(tr, {}, args=args, key=KEY)
    gm.memory.materialize((new, w))
    return _verdict(finite_or_neg_inf(tr.score, w))


# -- inference -----------------------------------------------------------------------------------

@gm.gen
def _lin(n):
    mu = gm.trace("mu", dist.normal(0.0, 2.0))
    k = gm.trace("k", dist.bernoulli(0.4))
    for i in range(n if isinstance(n, int) and 0 <= n <= 4 else 2):
        gm.trace(f"y{i}", dist.normal(mu + k, 1.0))
    return mu


def inference(alg, spec):
    n, m, step = spec["n"], spec["m"], spec["step"]
    obs = {k: decode(v) for k, v in spec["obs"].items()} if isinstance(spec["obs"], dict) else spec["obs"]
    if obs == {}:
        obs = {"y0": decode(spec["y"]) if not isinstance(spec["y"], list) else spec["y"]}
    sel = make_selection(spec["sel"])
    addrs = spec["addrs"]
    if alg in ("hmc", "mala", "nuts", "vi") and isinstance(obs, dict) and isinstance(addrs, list):
        # gradient samplers need every choice outside `addresses` observed: fill in the rest, so that
        # valid inputs reach the sampler itself (the generated observations take precedence)
        rest = {"k": 1.0, "y0": 0.5, "y1": -1.0}
        obs = {**{a: v for a, v in rest.items() if a not in addrs}, **obs}
    args = (2,)
    key = KEY
    if alg == "importance_sampling":
        r = infer.importance_sampling(_lin, args, obs, n_particles=n, key=key)
    elif alg == "mh":
        r = infer.mh(_lin, args, obs, selection=sel, n_samples=n, burn=m if isinstance(m, int) and m < 5 else 0, key=key)
    elif alg == "compiled_mh":
        r = infer.compiled_mh(_lin, args, obs, selection=sel, n_samples=n, key=key)
    elif alg == "mh_chains":
        r = infer.mh_chains(_lin, args, obs, selection=sel, n_chains=m, n_samples=n, key=key)
    elif alg == "smc":
        seq_args = [(i + 1,) for i in range(n)] if isinstance(n, int) and 0 <= n <= 4 else n
        seq_obs = [{f"y{i}": obs.get(f"y{i}", 0.5) if isinstance(obs, dict) else obs} for i in range(n)] \
            if isinstance(n, int) and 0 <= n <= 4 else obs
        r = infer.smc(_lin, seq_args, seq_obs, n_particles=m, rejuvenation=sel if spec["sel"] else None, key=key)
    elif alg == "gibbs":
        r = infer.gibbs(_lin, args, obs, addresses=addrs, n_samples=n, key=key)
    elif alg == "elliptical_slice":
        r = infer.elliptical_slice(_lin, args, obs, addresses=addrs, n_samples=n, key=key)
    elif alg == "compiled_gibbs":
        r = infer.compiled_gibbs(_lin, args, obs, addresses=addrs, n_samples=n, key=key)
    elif alg == "compiled_elliptical_slice":
        r = infer.compiled_elliptical_slice(_lin, args, obs, addresses=addrs, n_samples=n, key=key)
    elif alg == "hmc":
        r = infer.hmc(_lin, args, obs, addresses=addrs, n_samples=n, step_size=step, n_leapfrog=m, key=key)
    elif alg == "mala":
        r = infer.mala(_lin, args, obs, addresses=addrs, n_samples=n, step_size=step, key=key)
    elif alg == "nuts":
        r = infer.nuts(_lin, args, obs, addresses=addrs, n_samples=n, step_size=step, key=key)
    elif alg == "vi":
        r = infer.vi(_lin, args, obs, addresses=addrs, iterations=n, learning_rate=step, key=key)
    else:
        grid = {a: [0.0, 1.0] for a in addrs} if addrs else spec["sel"]
        r = infer.enumerative(_lin, args, obs, grid=grid, key=key)
    lw = list(r.log_weights) if r.log_weights is not None else []
    return _verdict(finite_or_neg_inf(r.log_ml if r.log_ml is not None else 0.0, *(lw[:50] or [0.0])),
                    finite_or_neg_inf(*[t.score for t in list(r.traces)[:20]] or [0.0]))


# -- the plugin's configuration --------------------------------------------------------------------

def plugin(what, spec):
    from genmlx_observe import Config, observe
    from genmlx_observe.config import from_env

    if what == "observe_config":
        Config(prometheus_port=spec["port"], sample_every=spec["every"], census_overhead=spec["overhead"],
               site_top_k=spec["top_k"], service_name=spec["label"])
        return "result", ""
    if what == "observe_env":
        env = {"GENMLX_PROMETHEUS_PORT": str(spec["port"]), "GENMLX_OBSERVE_SAMPLE_EVERY": str(spec["every"]),
               "GENMLX_OBSERVE_SITES_TOP_K": str(spec["top_k"]), "OTEL_SERVICE_NAME": spec["label"],
               "GENMLX_OBSERVE_CENSUS_OVERHEAD": str(spec["overhead"])}
        from_env(env)
        return "result", ""
    port = spec["port"] if spec["port"] in (None, 0) else None  # never bind a fixed port: workers run in parallel
    with observe(prometheus_port=port, otlp_endpoint=spec["endpoint"] or None, otlp_timeout_s=0.2,
                 shutdown_timeout_s=0.5, service_name=spec["label"] or None,
                 resource_attributes={"label": spec["label"]}):
        r = infer.importance_sampling(_lin, (1,), {"y0": 0.3}, n_particles=3, key=KEY)
    return _verdict(finite_or_neg_inf(r.log_ml))

