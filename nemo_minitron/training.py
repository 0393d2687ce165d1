"""Training pieces shared by teacher pretraining and (later) distillation.

Both stages train an HF causal LM on packed token rows with the same optimizer recipe
(AdamW, no decay on norms/biases, linear warmup then cosine decay, as in the Minitron-SSM
paper), log the same throughput, and judge a language model against the same floor (the
unigram baseline). Keeping them here means the two stages cannot drift apart.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any, Union

import lightning as L
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DataLoader, Dataset

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


# --------------------------------------------------------------------------- data
class PackedRows(Dataset):
    """Rows of a packed ``[n, seq_len]`` token tensor, as ``{"input_ids": row}``: the batch
    format HF causal LMs take as keyword arguments."""

    def __init__(self, tokens: torch.Tensor) -> None:
        if tokens.ndim != 2:
            raise ValueError(f"expected a packed [n_rows, seq_len] tensor, got shape {tuple(tokens.shape)}")
        self.tokens = tokens.long()

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[index]}


def packed_loader(tokens: torch.Tensor, batch_size: int, shuffle: bool = False, seed: int = 0,
                  drop_last: bool = False) -> DataLoader:
    """A DataLoader over the rows of a packed tensor. Shuffling uses its own seeded generator,
    so the data order is reproducible regardless of other RNG use. In-process loading
    (no workers): rows are already tensors, and workers would compete for the few CPU cores."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = PackedRows(tokens)
    if len(dataset) == 0:
        raise ValueError("packed token tensor has no rows: the corpus is shorter than one sequence")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last and len(dataset) >= batch_size, num_workers=0)


# --------------------------------------------------------------------------- metrics
class TokensPerSecond(L.Callback):
    """Logs ``tokens_per_sec``: tokens of each training batch (all ranks) over the wall time from
    batch start to batch end (forward, backward, optimizer step). Also keeps running totals so a
    caller can report the run's mean throughput and tokens seen."""

    def __init__(self, key: str = "input_ids") -> None:
        self.key = key
        self.total_tokens = 0
        self.total_seconds = 0.0
        self._start: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self._start is None:
            return
        seconds = time.perf_counter() - self._start
        tokens = batch[self.key].numel() * trainer.world_size
        self.total_tokens += tokens
        self.total_seconds += seconds
        pl_module.log("tokens_per_sec", tokens / max(seconds, 1e-9), on_step=True, on_epoch=False,
                      prog_bar=True, batch_size=batch[self.key].shape[0])

    @property
    def mean_tokens_per_sec(self) -> float:
        return self.total_tokens / self.total_seconds if self.total_seconds else 0.0


def unigram_loss(train_tokens: torch.Tensor, val_tokens: torch.Tensor, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of ``val_tokens`` under add-one-smoothed unigram frequencies of
    ``train_tokens``: what a model that ignores context scores. A trained LM must be far below
    it, or it has learned only token frequencies. Pass exactly the positions the LM is scored
    on (for packed rows: ``val[:, 1:]``) to compare like with like."""
    train = train_tokens.reshape(-1).long()
    val = val_tokens.reshape(-1).long()
    if val.numel() == 0:
        raise ValueError("val_tokens is empty")
    top = int(max(train.max().item() if train.numel() else 0, val.max().item()))
    if top >= vocab_size:
        raise ValueError(f"token id {top} is outside vocab_size={vocab_size}")
    counts = torch.bincount(train, minlength=vocab_size).double() + 1.0
    log_probs = counts.log() - counts.sum().log()
    return float(-log_probs[val].mean())
