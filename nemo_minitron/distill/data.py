"""Training batches whose order is a pure function of (seed, step, rank).

A plain DataLoader restarts its epoch when a run resumes from a mid-epoch checkpoint, so the
resumed run would see different batches than an uninterrupted one. Here the sampler starts
at the batch that follows the restored optimizer step, and each rank takes its slice of the
same global batch, so 1 process with batch 2b and 2 processes with batch b see the same data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Sampler

from ..training import PackedRows


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches for global batches ``start, start+1, ..., total-1``.

    Global batch g holds rows ``perm_e[...]`` of a seeded permutation per pass e over the data,
    so the stream never depends on how many times the loader was rebuilt.
    """

    def __init__(self, num_rows: int, micro_batch: int, total_batches: int, seed: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1):
        self.num_rows, self.micro_batch, self.total = num_rows, micro_batch, total_batches
        self.seed, self.start, self.rank, self.world = seed, start, rank, world_size
        self.global_batch = micro_batch * world_size
        if self.global_batch > num_rows:
            raise ValueError(f"global batch {self.global_batch} exceeds the {num_rows} available sequences")

    def _rows_of(self, g: int) -> list[int]:
        per_pass = self.num_rows // self.global_batch
        epoch, within = divmod(g, per_pass)
        perm = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + 1000003 * epoch))
        lo = within * self.global_batch + self.rank * self.micro_batch
        return perm[lo:lo + self.micro_batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for g in range(self.start, self.total):
            yield self._rows_of(g)

    def __len__(self) -> int:
        return max(self.total - self.start, 0)


class PackedTokensData(L.LightningDataModule):
    """Train/validation loaders over packed token rows with resumable, rank-sliced order."""

    def __init__(self, train: torch.Tensor, val: Optional[torch.Tensor], micro_batch: int, max_steps: int,
                 seed: int = 0, val_batch: Optional[int] = None):
        super().__init__()
        self.train_rows, self.val_rows = PackedRows(train), (PackedRows(val) if val is not None else None)
        self.micro_batch, self.max_steps, self.seed = micro_batch, max_steps, seed
        self.val_batch = val_batch or micro_batch

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches if trainer else 1
        start = trainer.global_step * accumulate if trainer else 0
        sampler = StepBatchSampler(
            len(self.train_rows), self.micro_batch, self.max_steps * accumulate, seed=self.seed, start=start,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)
        return DataLoader(self.train_rows, batch_sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        if self.val_rows is None:
            return []  # type: ignore[return-value]
        return DataLoader(self.val_rows, batch_size=self.val_batch, shuffle=False)
