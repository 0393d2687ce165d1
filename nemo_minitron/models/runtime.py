"""Run-time settings of a loaded model that are not part of its checkpoint.

Family knowledge (where the Mamba mixers and the LM head live) belongs to the family files;
these helpers ask the family and are the one place the rest of the package goes for it.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .adapter import adapter_for
from .registry import find_family

#: Mamba chunk length used on CPU. The chunked SSM scan pads every sequence to a multiple of the
#: chunk and does O(chunk^2) work per chunk; with the reference (non-CUDA) kernels a 32-token chunk
#: made a tiny-teacher training step ~2x faster than the checkpoints' 128 at 48 tokens and ~1.35x
#: at 768 tokens. The result is the same up to float rounding (the scan is exact for any chunk).
CPU_SSM_CHUNK = 32


def set_ssm_chunk_size(model: nn.Module, size: Optional[int]) -> int:
    """Set the scan chunk length of every Mamba mixer of ``model`` (an HF model of a supported
    family; runtime only: the config, and so the saved checkpoint, keep theirs). ``None`` leaves
    them. Returns the number of mixers changed."""
    if size is None:
        return 0
    if size < 1:
        raise ValueError(f"ssm_chunk_size={size} must be >= 1")
    mixers = adapter_for(model).ssm_mixers()
    for mixer in mixers:
        mixer.chunk_size = int(size)
    return len(mixers)


def resolve_chunk_size(ssm_chunk_size: Optional[int], accelerator: str) -> Optional[int]:
    """The explicit value, else :data:`CPU_SSM_CHUNK` on CPU and the model's own elsewhere."""
    if ssm_chunk_size is not None:
        return ssm_chunk_size
    return CPU_SSM_CHUNK if accelerator == "cpu" or not torch.cuda.is_available() else None


def backbone_and_head(model: nn.Module) -> Optional[tuple[nn.Module, nn.Module]]:
    """``(backbone, lm_head)`` of an HF causal LM of a supported family, or None for any other model.

    Lets a loss run the LM head only on the positions it needs (see
    ``losses.logprobs.selected_logits``).
    """
    from transformers import PreTrainedModel

    family = find_family(getattr(getattr(model, "config", None), "model_type", None))
    if family is None or not isinstance(model, PreTrainedModel):  # e.g. a wrapper that must see every call
        return None
    return family.backbone(model), family.lm_head(model)
