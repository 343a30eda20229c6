"""Run a per-item function on one item, or on a batch of items laid over devices.

An item function has the form `fn(shared, item) -> out`: `shared` (the VGG weights, a PRNG
key, a step budget) is the same for every item; `item` holds one item's arrays. `Items`
says how `fn` is applied:

- `ONE`: a single item, `fn(shared, item)` as it is (no batch axis anywhere).
- `Items(strategy, mesh)`: `item` and the output carry a leading batch axis B. With
  "vmap" (and "auto", outside the optimiser's step) the items run as one batched program (convolutions over B images at once);
  with "map" one after another (`lax.map`), each with the single-item program. The
  latter suits optax's zoom line search: it branches with `lax.cond` on per-item values,
  and under vmap a cond with a batched predicate evaluates both branches with every
  operand broadcast over the batch (the VGG weights too).
- With a `mesh` (1-D, axis "batch") the batch is laid over its devices and each device
  runs its own slice under `jax.shard_map`, with no communication (left to `jit`'s
  sharding propagation, a vmapped zoom step was partitioned with all-gathers per chunk).

`Items` is a frozen dataclass, hashable, so it is a static argument of the jitted programs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, PartitionSpec

from jaxstyle.errors import JaxstyleError, did_you_mean

__all__ = ["BATCH_AXIS", "Items", "ONE", "STRATEGIES", "batch_mesh", "resolve_strategy"]

BATCH_AXIS = "batch"
STRATEGIES = ("auto", "vmap", "map")


@dataclasses.dataclass(frozen=True)
class Items:
    """How an item function runs: on one item (`strategy` None) or over a batch axis."""

    strategy: str | None = None
    mesh: Mesh | None = None

    @property
    def batched(self) -> bool:
        return self.strategy is not None

    def for_optimizer(self, *, zoom_linesearch: bool) -> Items:
        """These items with "auto" resolved for an optimiser (`resolve_strategy`)."""
        if not self.batched:
            return self
        return Items(resolve_strategy(self.strategy, zoom_linesearch=zoom_linesearch), self.mesh)

    def apply(self, fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
        """`fn(shared, item)` for one item, or for every item along `item`'s leading axis."""
        if not self.batched:
            return fn(shared, item)

        def local(shared: Any, items: Any) -> Any:
            one = lambda it: fn(shared, it)  # noqa: E731
            return jax.lax.map(one, items) if self.strategy == "map" else jax.vmap(one)(items)

        if self.mesh is None:
            return local(shared, item)
        spec = PartitionSpec(BATCH_AXIS)
        return jax.shard_map(local, mesh=self.mesh, in_specs=(PartitionSpec(), spec), out_specs=spec,
                             check_vma=False)(shared, item)


ONE = Items()


def batch_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis "batch" over `devices` (default: this process's devices)."""
    devices = list(devices) if devices is not None else jax.local_devices()
    return Mesh(np.array(devices), (BATCH_AXIS,))


def resolve_strategy(strategy: str, *, zoom_linesearch: bool) -> str:
    """"vmap" or "map": "auto" is "map" with a zoom line search (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise JaxstyleError(f"unknown batch strategy {strategy!r}{did_you_mean(strategy, STRATEGIES)}; "
                            f"choose one of {', '.join(STRATEGIES)}")
    if strategy == "auto":
        return "map" if zoom_linesearch else "vmap"
    return strategy
