"""Training batches whose order is a pure function of (seed, step, rank), for every stage.

A plain DataLoader restarts its epoch when a run resumes from a mid-epoch checkpoint, so the
resumed run would see different batches than an uninterrupted one. Here the sampler starts at
the batch that follows the restored optimizer step, and each rank takes its slice of the same
global batch, so 1 process with batch 2b and 2 processes with batch b see the same data.
The whole run is one Lightning epoch of ``max_steps x accumulation`` micro-batches.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Optional

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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
    """A plain DataLoader over the rows of a packed tensor (evaluation; training uses
    :class:`StepData`). Shuffling uses its own seeded generator. In-process loading (no
    workers): rows are already tensors, and workers would compete for the few CPU cores."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = PackedRows(tokens)
    if len(dataset) == 0:
        raise ValueError("packed token tensor has no rows: the corpus is shorter than one sequence")
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator,
                      drop_last=drop_last and len(dataset) >= batch_size, num_workers=0)


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's micro-batches for global batches ``start, start+1, ..., total-1``.

    The stream is one sequence of micro-batches: micro-batch u holds rows ``perm_e[...]`` of a
    seeded permutation per pass e over the data, and rank r of W takes micro-batch ``g * W + r``
    at its batch g. So the stream never depends on how many times the loader was rebuilt, and an
    optimizer step reads the same rows whether it accumulates 2 micro-batches in one process or
    runs them in 2 (a run can change ``devices`` when it is warm-started). Its length is
    ``total`` even when resumed at ``start > 0``: Lightning restores the epoch's batch counter
    to ``start`` and ends the epoch when the counter reaches the loader's length, so the length
    must count the batches already done (a length of ``total - start`` ended a resumed run
    ``start`` batches early and restarted the loader, repeating data).
    """

    def __init__(self, num_rows: int, micro_batch: int, total_batches: int, seed: int = 0, start: int = 0,
                 rank: int = 0, world_size: int = 1, offset: int = 0):
        self.num_rows, self.micro_batch, self.total = num_rows, micro_batch, total_batches
        self.seed, self.start, self.rank, self.world = seed, start, rank, world_size
        self.offset = offset  # batch g of this run is batch g + offset of the seeded stream (a continued run)
        self.global_batch = micro_batch * world_size
        if self.global_batch > num_rows:
            raise ValueError(f"global batch {self.global_batch} exceeds the {num_rows} available sequences")

    def _rows_of(self, g: int) -> list[int]:
        epoch, within = divmod(g * self.world + self.rank, self.num_rows // self.micro_batch)
        perm = torch.randperm(self.num_rows, generator=torch.Generator().manual_seed(self.seed + 1000003 * epoch))
        lo = within * self.micro_batch
        return perm[lo:lo + self.micro_batch].tolist()

    def __iter__(self) -> Iterator[list[int]]:
        for g in range(self.start, self.total):
            yield self._rows_of(g + self.offset)

    def __len__(self) -> int:
        return self.total


class StepData(L.LightningDataModule):
    """Any map-style dataset in a resumable, rank-sliced order, plus an optional validation set.

    ``collate`` batches items (None: PyTorch's default, e.g. for :class:`PackedRows`).
    ``first_step``: the run continues another that stopped there (a warm start): its step s trains
    on the batches of step ``first_step + s``, so the data carries on where that run left it.
    """

    def __init__(self, train: Dataset, micro_batch: int, max_steps: int, seed: int = 0,
                 collate: Optional[Callable[[list[Any]], Any]] = None, val: Optional[Dataset] = None,
                 val_batch: Optional[int] = None, first_step: int = 0):
        super().__init__()
        self.first_step = first_step
        self.train_set, self.val_set, self.collate = train, val, collate
        self.micro_batch, self.max_steps, self.seed = micro_batch, max_steps, seed
        self.val_batch = val_batch or micro_batch

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches if trainer else 1
        sampler = StepBatchSampler(
            len(self.train_set), self.micro_batch, self.max_steps * accumulate, seed=self.seed,
            start=trainer.global_step * accumulate if trainer else 0,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1,
            offset=self.first_step * accumulate)
        return DataLoader(self.train_set, batch_sampler=sampler, collate_fn=self.collate)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            return []  # type: ignore[return-value]
        return DataLoader(self.val_set, batch_size=self.val_batch, shuffle=False, collate_fn=self.collate)
