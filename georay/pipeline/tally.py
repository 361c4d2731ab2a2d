"""Counts that a job's tasks add to and its driver reads: how fetching went, for summary.json.

Rows cannot carry them: model stages rebuild their rows from a fixed schema. So the driver
starts one small named actor per Ray job (no CPU), the fetch stage adds each block's counts to
it, and :func:`take` reads and resets them. Outside a bulk job (no actor, or no Ray) adding is a
no-op: the counts are diagnostics and never fail a row.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger(__name__)

ACTOR_NAME = "georay-tally"
_handle = None


class Tally:
    """Sums of named counts (the actor's class)."""

    def __init__(self) -> None:
        self.counts: dict[str, float] = {}

    def add(self, counts: dict[str, float]) -> None:
        for key, value in counts.items():
            self.counts[key] = self.counts.get(key, 0) + value

    def take(self) -> dict[str, float]:
        counts, self.counts = self.counts, {}
        return counts


_driver_handle = None


def start():
    """Driver: the job's tally actor, started or found, and emptied; returns its handle.

    The driver keeps its handle for good: a failed job's handle, dropped, would otherwise let Ray
    destroy the actor just as the next job of the same driver finds it by name (that job's
    ``take`` then met a dead actor). It still dies with the driver. It lives on the driver's
    node: anywhere else, losing a worker node (spot) mid-job would take the counts with it.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)

    global _driver_handle
    for _ in range(2):  # a handle of an earlier Ray session (shutdown, init again) is stale
        if _driver_handle is None:
            _driver_handle = (
                ray.remote(num_cpus=0)(Tally)
                .options(
                    name=ACTOR_NAME, get_if_exists=True, max_concurrency=1, scheduling_strategy=here
                )
                .remote()
            )
        try:
            ray.get(_driver_handle.take.remote())
            return _driver_handle
        except Exception:
            _driver_handle = None
    raise RuntimeError("could not start the job's tally actor")


def add(counts: dict[str, float]) -> None:
    """Task: add ``counts`` to the job's tally, if there is one."""
    global _handle
    ray = sys.modules.get("ray")  # a Ray worker has imported it; importing it here costs a second
    if ray is None or not ray.is_initialized():
        return
    # Twice at most: a worker outlives a job, and its cached handle may name the tally actor of
    # an earlier job of the same driver, gone since; the second try looks the name up afresh.
    for fresh in (_handle is None, True):
        try:
            if fresh:
                _handle = ray.get_actor(ACTOR_NAME)
            # Waited for, so the counts are in before the block reaches the driver.
            ray.get(_handle.add.remote(counts))
            return
        except ValueError:  # no tally actor: not inside a bulk job
            _handle = None
            return
        except Exception as err:  # diagnostics only: never fail a block over them
            _handle = None
            if fresh:
                log.warning("could not add fetch counts: %s", err)


def take(actor) -> dict[str, float]:
    """Driver: the counts added since :func:`start` (and reset them).

    A lost actor loses only diagnostics: the job's rows are committed, so it still finishes, and
    the summary says the counts are missing rather than showing zeros.
    """
    import ray

    global _driver_handle
    try:
        return ray.get(actor.take.remote())
    except Exception as err:
        log.warning("fetch counts lost: %s", err)
        _driver_handle = None  # the next job starts a fresh actor
        return {"counts_lost": 1}
