"""genmlx.memory: measure and bound what MLX keeps alive (see docs/memory.md)."""

from .api import (
    active_bytes,
    cache_bytes,
    clear_cache,
    device_info,
    peak_bytes,
    reset_peak,
    set_cache_limit,
    set_memory_limit,
    set_wired_limit,
)
from .budget import METAL_RESOURCE_LIMIT, budget, budget_status, check_budget, get_budget, set_budget
from .cache import DEFAULT_CACHE_LIMIT, apply_default_cache_policy, cache_limit, no_cache
from .census import Census, live_array_objects, live_arrays, young_array_objects
from .errors import ResourceLimitExceeded
from .graph import count_nodes, graph_cost, nodes_added, pending_node_ids, pending_nodes, young_pending_nodes
from .materialize import materialize
from .report import report
from .walk import arrays_in

__all__ = [
    "active_bytes",
    "cache_bytes",
    "peak_bytes",
    "reset_peak",
    "set_memory_limit",
    "set_cache_limit",
    "set_wired_limit",
    "clear_cache",
    "device_info",
    "live_arrays",
    "live_array_objects",
    "young_array_objects",
    "Census",
    "pending_node_ids",
    "count_nodes",
    "pending_nodes",
    "young_pending_nodes",
    "nodes_added",
    "graph_cost",
    "materialize",
    "arrays_in",
    "METAL_RESOURCE_LIMIT",
    "budget",
    "set_budget",
    "get_budget",
    "check_budget",
    "budget_status",
    "DEFAULT_CACHE_LIMIT",
    "apply_default_cache_policy",
    "no_cache",
    "cache_limit",
    "report",
    "ResourceLimitExceeded",
]
