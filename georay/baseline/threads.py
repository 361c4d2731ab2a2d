"""CPU threads of a baseline's actor (torch, and faiss for the kNN search)."""

from __future__ import annotations


def set_threads(threads: int, per_node: int) -> None:
    """torch and faiss CPU threads of one actor: ``threads``, else its node's CPUs (as Ray
    reports them) shared by the pool's actors on that node (:func:`pipeline.actor_threads`)."""
    import torch

    from georay.pipeline.stages import actor_threads

    n = actor_threads(threads, per_node)
    torch.set_num_threads(n)
    try:
        import faiss

        faiss.omp_set_num_threads(n)
    except ImportError:  # zero-shot needs no faiss
        pass
