"""Where each Mamba2 quantity lives inside the fused ``in_proj`` and ``conv1d`` weights.

Both NemotronH and Mamba2 fuse five projections into one ``in_proj`` (rows z | x | B | C | dt)
and run one depthwise ``conv1d`` over x | B | C. Pruning a head or a head channel means
cutting matching rows out of several of these blocks, so the layout lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

IN_PROJ_PARTS = ("z", "x", "B", "C", "dt")
CONV_PARTS = ("x", "B", "C")


@dataclass(frozen=True)
class MambaShape:
    """Sizes of one Mamba2 mixer."""

    num_heads: int
    head_dim: int
    num_groups: int
    state_dim: int

    @property
    def inner(self) -> int:
        return self.num_heads * self.head_dim

    @property
    def group_state(self) -> int:
        return self.num_groups * self.state_dim

    @property
    def conv_dim(self) -> int:
        return self.inner + 2 * self.group_state

    @property
    def heads_per_group(self) -> int:
        return self.num_heads // self.num_groups

    def part_sizes(self, parts: tuple[str, ...]) -> list[int]:
        sizes = {"z": self.inner, "x": self.inner, "B": self.group_state, "C": self.group_state,
                 "dt": self.num_heads}
        return [sizes[p] for p in parts]

    def group_of_head(self, head: int) -> int:
        """Heads of a group are a contiguous block: head h reads B/C group h // (H/G)."""
        return head // self.heads_per_group

    def channel_index(self, heads: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
        """Flat indices into an I = heads*head_dim axis for the kept heads x kept channels."""
        return (heads[:, None] * self.head_dim + channels[None, :]).reshape(-1)


def split_rows(tensor: torch.Tensor, shape: MambaShape, parts: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Views of ``tensor`` cut along dim 0 into the named parts."""
    sizes = shape.part_sizes(parts)
    if tensor.shape[0] != sum(sizes):
        raise ValueError(f"tensor has {tensor.shape[0]} rows but the layout {parts} of {shape} needs {sum(sizes)}")
    return dict(zip(parts, torch.split(tensor, sizes, dim=0)))


def merge_rows(pieces: dict[str, torch.Tensor], parts: tuple[str, ...]) -> torch.Tensor:
    """Inverse of :func:`split_rows`."""
    missing = [p for p in parts if p not in pieces]
    if missing:
        raise ValueError(f"missing parts {missing} to assemble {parts}")
    return torch.cat([pieces[p] for p in parts], dim=0)


def split_in_proj(weight: torch.Tensor, shape: MambaShape) -> dict[str, torch.Tensor]:
    """``in_proj.weight`` (or bias) -> {z, x, B, C, dt}."""
    return split_rows(weight, shape, IN_PROJ_PARTS)


def merge_in_proj(pieces: dict[str, torch.Tensor]) -> torch.Tensor:
    return merge_rows(pieces, IN_PROJ_PARTS)


def split_conv(weight: torch.Tensor, shape: MambaShape) -> dict[str, torch.Tensor]:
    """``conv1d.weight`` ([conv_dim, 1, K]) or bias -> {x, B, C}."""
    return split_rows(weight, shape, CONV_PARTS)


def merge_conv(pieces: dict[str, torch.Tensor]) -> torch.Tensor:
    return merge_rows(pieces, CONV_PARTS)
