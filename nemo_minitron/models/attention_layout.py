"""Row layout of multi-head attention projections: head h owns rows [h*head_dim, (h+1)*head_dim).

Every supported family (and the HF transformers it would add) lays out q_proj rows and o_proj
columns head-major, so cutting query heads is one index computation shared by all of them.
"""

from __future__ import annotations

import torch


def attention_axes(head_dim: int, heads: list[int]) -> dict[str, torch.Tensor]:
    """Row indices of the ``q`` trim axis for the kept query heads."""
    h = torch.as_tensor(heads, dtype=torch.long)
    return {"q": (h[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)}
