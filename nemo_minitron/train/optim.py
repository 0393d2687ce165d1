"""The optimizer recipe of every training stage (Minitron-SSM paper): AdamW without decay on
norms/biases, linear warmup then cosine decay; or warmup-stable-decay (WSD) for runs whose length
is not known in advance (the teacher's)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Union

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from .config import OptimConfig

ParamsLike = Union[nn.Module, Iterable[torch.Tensor], Iterable[tuple[str, torch.Tensor]]]


# --------------------------------------------------------------------------- schedule
def cosine_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int,
                       min_lr_ratio: float = 0.1) -> LambdaLR:
    """Linear warmup to the base LR over ``warmup_steps``, then cosine decay to
    ``min_lr_ratio * base`` at ``total_steps`` (and flat after it).

    Warmup starts at ``1/warmup_steps`` of the base LR rather than 0 so the first optimizer
    step is not wasted; with ``warmup_steps=0`` decay starts at the base LR.
    """
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, total_steps={total_steps}], got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"min_lr_ratio must be in [0, 1], got {min_lr_ratio}")

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, factor)


def wsd_factor(step: int, warmup_steps: int, total_steps: int, decay_steps: int, min_lr_ratio: float) -> float:
    """Warmup-stable-decay: linear warmup (as :func:`cosine_with_warmup`), the base LR until
    ``total_steps - decay_steps``, then linear decay to ``min_lr_ratio`` at ``total_steps`` (flat after).

    Until the decay begins the factor does not depend on ``total_steps``, which is what lets a run
    be extended (a larger ``total_steps``) or cut short (a smaller one, not yet reached) midway.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    decay_start = total_steps - decay_steps
    if step < decay_start or decay_steps == 0:
        return 1.0 if step < total_steps else min_lr_ratio
    progress = min(1.0, (step - decay_start) / decay_steps)
    return 1.0 - (1.0 - min_lr_ratio) * progress


def wsd_with_warmup(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int, decay_steps: int,
                    min_lr_ratio: float = 0.1) -> LambdaLR:
    """A :class:`LambdaLR` of :func:`wsd_factor`."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if warmup_steps < 0 or decay_steps < 0 or warmup_steps + decay_steps > total_steps:
        raise ValueError(f"warmup_steps={warmup_steps} + decay_steps={decay_steps} must fit in total_steps={total_steps}")
    return LambdaLR(optimizer, lambda step: wsd_factor(step, warmup_steps, total_steps, decay_steps, min_lr_ratio))


# --------------------------------------------------------------------------- optimizer
def _named_params(params: ParamsLike) -> list[tuple[str, torch.Tensor]]:
    if isinstance(params, nn.Module):
        return list(params.named_parameters())
    named = []
    for i, item in enumerate(params):
        named.append(item if isinstance(item, tuple) else (f"param_{i}", item))
    return named


def param_groups(params: ParamsLike, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into decayed (matrices, embeddings) and not decayed
    (anything 1-D: norms, biases, Mamba ``A_log``/``D``/``dt_bias``).

    Decaying a norm gain or ``A_log`` pulls it toward 0, which changes what the layer computes
    rather than regularising it. Tied parameters (shared embedding/LM head) appear once.
    """
    decay, no_decay, seen = [], [], set()
    for _name, param in _named_params(params):
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_adamw(params: ParamsLike, lr: float, weight_decay: float,
               betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW with the LLM-pretraining betas (0.95 reacts faster than 0.999 to loss spikes) and
    no weight decay on 1-D parameters. ``params``: a module, tensors or (name, tensor) pairs."""
    return torch.optim.AdamW(param_groups(params, weight_decay), lr=lr, betas=betas)


def configure_optimizer(params: ParamsLike, optim: OptimConfig, total_steps: int) -> dict[str, Any]:
    """What a LightningModule's ``configure_optimizers`` returns: AdamW + a per-step schedule."""
    optimizer = make_adamw(params, lr=optim.lr, weight_decay=optim.weight_decay, betas=(optim.beta1, optim.beta2))
    if optim.schedule == "wsd":
        scheduler = wsd_with_warmup(optimizer, optim.warmup_steps, total_steps, optim.decay_steps, optim.min_lr_ratio)
    else:
        scheduler = cosine_with_warmup(optimizer, optim.warmup_steps, total_steps, optim.min_lr_ratio)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
