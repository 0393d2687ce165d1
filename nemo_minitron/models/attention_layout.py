"""Row layout of multi-head attention projections: head h owns rows [h*head_dim, (h+1)*head_dim).

Every supported family (and the HF transformers it would add) lays out q_proj rows and o_proj
columns head-major, so cutting query heads is one index computation shared by all of them.
"""

from __future__ import annotations

import torch

from .family import Axes


def attention_axes(head_dim: int, heads: list[int]) -> dict[str, torch.Tensor]:
    """Row indices of the ``q`` trim axis for the kept query heads."""
    h = torch.as_tensor(heads, dtype=torch.long)
    return {"q": (h[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)}


#: Trim rules of an HF attention module (keys below it). Query heads are cut (``q``); key/value heads are
#: kept whole, so every KV group keeps its K/V rows; q/k norms act on one head_dim vector shared by all heads.
ATTENTION_RULES: dict[str, Axes] = {
    "q_proj.weight": ("q", "hidden"),
    "q_proj.bias": ("q",),
    "k_proj.weight": (None, "hidden"),
    "k_proj.bias": (None,),
    "v_proj.weight": (None, "hidden"),
    "v_proj.bias": (None,),
    "o_proj.weight": ("hidden", "q"),
    "o_proj.bias": ("hidden",),
    "q_norm.weight": (None,),
    "k_norm.weight": (None,),
}
