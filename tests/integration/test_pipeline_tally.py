"""The job's tally actor: counts reach the driver, and losing the actor loses only counts."""

from __future__ import annotations

import time

import pytest
import ray

from georay.pipeline import tally


def test_counts_added_by_tasks_reach_the_driver_once(ray_session):
    actor = tally.start()

    @ray.remote(num_cpus=0)
    def task(n: int) -> None:
        tally.add({"objects": n, "retries": 1})

    ray.get([task.remote(n) for n in (1, 2, 3)])
    assert tally.take(actor) == {"objects": 6, "retries": 3}
    assert tally.take(actor) == {}  # taken once


def test_a_lost_tally_actor_loses_the_counts_not_the_job(ray_session):
    actor = tally.start()
    tally.add({"objects": 5})
    ray.kill(actor)  # what losing its node does to it; the kill lands asynchronously
    with pytest.raises(ray.exceptions.RayActorError):
        for _ in range(100):
            ray.get(actor.__ray_ready__.remote(), timeout=30)
            time.sleep(0.1)
    assert tally.take(actor) == {"counts_lost": 1}
    fresh = tally.start()  # the driver's next job gets a working one
    tally.add({"objects": 2})
    assert tally.take(fresh) == {"objects": 2}
