"""Trace sites for the leak gate: how many graph nodes (buffers) each site adds.

The handler counts the nodes of each trace site only while someone listens
(`genmlx.events.SiteHandled`, emitted while an `on_site` observer is
subscribed), and counting costs a graph export per site. So the tap listens
for one step after each of a loop's first censuses (for the failure report's
ranking), or for the whole test under `limit_buffers_per_site`.
"""

from __future__ import annotations

__all__ = ["SiteTap"]


class SiteTap:
    """An `on_site` observer: subscribed for one step after a census, or for the whole test.

    Keeps, per (address, gen_fn, op), the largest node count seen and its breakdown.
    """

    def __init__(self, events, always: bool = False):
        self._events = events
        self.always = always
        self.sites: dict[tuple, dict] = {}
        self._armed = False

    def on_site(self, ev) -> None:
        key = (tuple(ev.address) if isinstance(ev.address, (tuple, list)) else (ev.address,), ev.gen_fn, ev.op)
        cur = self.sites.get(key)
        if cur is None:
            self.sites[key] = {"address": list(key[0]), "gen_fn": ev.gen_fn, "op": ev.op, "nodes": int(ev.nodes),
                               "visits": 1, "breakdown": {str(k): int(v) for k, v in dict(ev.breakdown).items()}}
        else:
            cur["visits"] += 1
            if ev.nodes > cur["nodes"]:
                cur["nodes"] = int(ev.nodes)
                cur["breakdown"] = {str(k): int(v) for k, v in dict(ev.breakdown).items()}

    def start(self) -> None:
        if self.always:
            self._events.subscribe(self)

    def arm(self) -> None:
        if not self.always and not self._armed:
            self._armed = True
            self._events.subscribe(self)

    def disarm(self) -> None:
        if not self.always and self._armed:
            self._armed = False
            self._events.unsubscribe(self)

    def stop(self) -> None:
        self._armed = False
        self._events.unsubscribe(self)

    def ranked(self) -> list[dict]:
        """Sites by nodes, largest first; `leaf` is False for a site that contains other sites."""
        addrs = [tuple(s["address"]) for s in self.sites.values()]
        out = []
        for s in self.sites.values():
            a = tuple(s["address"])
            leaf = not any(len(b) > len(a) and b[: len(a)] == a for b in addrs)
            out.append(dict(s, leaf=leaf))
        out.sort(key=lambda s: (-s["nodes"], str(s["address"])))
        return out
