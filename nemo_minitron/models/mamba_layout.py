"""Where each Mamba2 quantity lives inside the fused ``in_proj`` and ``conv1d`` weights.

Both NemotronH and Mamba2 use the same mixer: five projections fused into one ``in_proj`` (rows
z | x | B | C | dt) and one depthwise ``conv1d`` over x | B | C. Pruning a head or a head channel
means cutting matching rows out of several of these blocks, so the layout, and the mixer's trim
rules, live here once and both family files use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..arch import HybridArch
from .family import IN_PROJ, OUT_PROJ, Axes

IN_PROJ_PARTS = ("z", "x", "B", "C", "dt")
CONV_PARTS = ("x", "B", "C")


@dataclass(frozen=True)
class MambaShape:
    """Sizes of one Mamba2 mixer."""

    num_heads: int
    head_dim: int
    num_groups: int
    state_dim: int

    @classmethod
    def of(cls, arch: HybridArch) -> MambaShape:
        return cls(arch.mamba_num_heads, arch.mamba_head_dim, arch.mamba_num_groups, arch.mamba_state_dim)

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


def split_in_proj(weight: torch.Tensor, shape: MambaShape) -> dict[str, torch.Tensor]:
    """``in_proj.weight`` (or bias, or its output moved to dim 0) -> {z, x, B, C, dt}."""
    return split_rows(weight, shape, IN_PROJ_PARTS)


def mamba_axes(shape: MambaShape, heads: list[int], channels: list[int]) -> dict[str, torch.Tensor]:
    """Row indices of the trim axes (``heads``, ``inner``, ``conv``, ``in_proj``) for the kept
    heads and head channels. B and C rows are never cut: they are shared by all heads of a group."""
    h = torch.as_tensor(heads, dtype=torch.long)
    inner = shape.channel_index(h, torch.as_tensor(channels, dtype=torch.long))
    i, gs = shape.inner, shape.group_state
    bc = torch.arange(2 * gs)
    return {
        "heads": h,
        "inner": inner,
        "conv": torch.cat([inner, i + bc]),  # conv1d channels: x | B | C
        "in_proj": torch.cat([inner, i + inner, 2 * i + bc, 2 * i + 2 * gs + h]),  # z | x | B | C | dt
    }


#: Trim rules of the mixer's parameters (keys below the mixer), shared by every family using it.
MIXER_RULES: dict[str, Axes] = {
    "in_proj.weight": ("in_proj", "hidden"),
    "in_proj.bias": ("in_proj",),
    "conv1d.weight": ("conv",),
    "conv1d.bias": ("conv",),
    "A_log": ("heads",),
    "D": ("heads",),
    "dt_bias": ("heads",),
    "norm.weight": ("inner",),  # gated RMSNorm over groups of I/G channels
    "out_proj.weight": ("hidden", "inner"),
    "out_proj.bias": ("hidden",),
}

#: Importance probes of the mixer: role -> attribute of the mixer.
MIXER_PROBES = {IN_PROJ: "in_proj", OUT_PROJ: "out_proj"}
