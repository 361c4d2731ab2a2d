"""Threads of a CPU model actor: from the node's CPUs as Ray reports them, not the host's."""

import os

from georay.pipeline.stages import actor_threads


def test_actor_threads_come_from_the_node_not_the_host():
    assert actor_threads(3, 1) == 3  # asked for
    cpus = len(os.sched_getaffinity(0))  # outside Ray: the CPUs this process may use
    assert actor_threads(0, 1) == cpus and actor_threads(0, 2 * cpus) == 1
