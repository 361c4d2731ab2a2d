"""How a model is spread over the Ray Train workers: DDP (a copy each) or FSDP (shards).

``ddp`` keeps a full model per worker and all-reduces gradients: right when the model fits one
GPU. ``fsdp`` shards parameters, gradients and optimizer state over the workers with PyTorch's
FSDP2 (``fully_shard`` on every decoder layer, then on the whole model), so a model that does not
fit one GPU trains on several. georay shards the model itself rather than through
``ray.train.torch.prepare_model(parallel_strategy="fsdp")``: Ray's helper wraps with FSDP1 and
refuses CPU workers, while FSDP2 runs on CPU (gloo) too, so the same path is tested here. LoRA
works under both: frozen and trainable parameters shard alike.

Checkpoints hold the *full* (gathered) trainable weights and optimizer state keyed by parameter
name (:func:`trainable_state`), written by rank 0. That is small for LoRA, and it is what lets a
run resume on a different number of workers, or with the other strategy.
"""

from __future__ import annotations

from typing import Any

import torch

STRATEGIES = ("ddp", "fsdp")


def _blocks(model: Any) -> list[torch.nn.Module]:
    """The transformer blocks (language model ``layers``, vision ``blocks``): FSDP's units."""
    blocks: list[torch.nn.Module] = []
    for name, child in model.named_modules():
        if isinstance(child, torch.nn.ModuleList) and name.endswith((".layers", ".blocks")):
            blocks.extend(child)
    return blocks


def wrap(model: Any, strategy: str, world_size: int) -> Any:
    """Wrap ``model`` for data-parallel training over ``world_size`` workers (in place for FSDP).

    With one worker there is nothing to spread: the model is returned as it is.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    if world_size <= 1:
        return model
    device = next(model.parameters()).device
    if strategy == "ddp":
        ids = [device] if device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(device.type, (world_size,))
    for block in _blocks(model):
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


def unwrap(model: Any) -> Any:
    """The module under a DDP wrapper (an FSDP2 model is its own module)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def _options(frozen_too: bool = False, load: bool = False):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(
        full_state_dict=True,
        cpu_offload=not load,
        ignore_frozen_params=not frozen_too,
        broadcast_from_rank0=False,
        strict=False,
    )


def trainable_state(model: Any, optimizer: Any) -> tuple[dict, dict]:
    """Full trainable weights and optimizer state, keyed by parameter name, on the CPU.

    Collective under FSDP: every rank must call it (rank 0 then saves the result).
    """
    from torch.distributed.checkpoint.state_dict import get_state_dict

    return get_state_dict(unwrap(model), optimizer, options=_options())


def full_state(model: Any) -> dict:
    """Every weight, gathered (a full fine-tune's final model). Collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(unwrap(model), options=_options(frozen_too=True))


def load_trainable_state(model: Any, optimizer: Any, weights: dict, optim: dict) -> None:
    """Load :func:`trainable_state` output (saved with any number of workers) into every rank."""
    from torch.distributed.checkpoint.state_dict import set_state_dict

    set_state_dict(
        unwrap(model),
        optimizer,
        model_state_dict=weights,
        optim_state_dict=optim,
        options=_options(load=True),
    )
