"""What every training run measures: throughput, the training-loss history, validation loss,
and the floor a language model must beat (the unigram baseline)."""

from __future__ import annotations

import math
import time
from typing import Any, Optional

import lightning as L
import torch

from nemo_minitron.losses.kd import shifted_cross_entropy_chunked


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


def micro_batch_loss(trainer: L.Trainer, outputs: Any) -> Optional[float]:
    """The training module's loss of one micro-batch, from ``on_train_batch_end``'s ``outputs``.

    Lightning hands over the loss divided by the accumulation count (what it back-propagates);
    this undoes the division, so callbacks report the loss itself at any accumulation.
    """
    loss = outputs["loss"] if isinstance(outputs, dict) else outputs
    return float(loss.detach()) * trainer.accumulate_grad_batches if torch.is_tensor(loss) else None


class LossHistory(L.Callback):
    """Each micro-batch's training loss, kept in the Lightning checkpoint so that a resumed run
    reports the whole run's first and last losses (the module's loss: :func:`micro_batch_loss`)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = micro_batch_loss(trainer, outputs)
        if loss is not None:
            self.losses.append(loss)

    def state_dict(self) -> dict[str, Any]:
        return {"losses": list(self.losses)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.losses = list(state_dict.get("losses", []))

    def first_and_last(self, accumulate: int) -> tuple[float, float]:
        """Mean loss of the first and of the last few optimizer steps (up to 5, at most half the run)."""
        window = max(1, min(5 * accumulate, len(self.losses) // 2))
        first, last = self.losses[:window], self.losses[-window:]
        return (sum(first) / len(first) if first else math.nan, sum(last) / len(last) if last else math.nan)


def validation_loss(model: torch.nn.Module, tokens: torch.Tensor, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` on packed rows."""
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    with torch.no_grad():
        for lo in range(0, tokens.shape[0], batch_size):
            batch = tokens[lo:lo + batch_size].to(device)
            logits = model(input_ids=batch, use_cache=False).logits
            total += shifted_cross_entropy_chunked(logits, batch).item() * batch.shape[0]
            n += batch.shape[0]
    return total / n if n else math.nan
