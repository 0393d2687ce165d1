"""GGUF files (llama.cpp's format) -> ordinary HF models.

transformers reads a GGUF file (with the ``gguf`` package) and dequantises its tensors to float32, but the
model it returns carries a ``quantization_config`` and refuses ``save_pretrained``. :func:`load_gguf` rebuilds
a plain model of the same config around the same tensors, so it saves, prunes and trains like any other.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .io import model_from_state_dict


def load_gguf(path: str | os.PathLike, dtype: torch.dtype | None = None) -> tuple[nn.Module, Any]:
    """``(model, tokenizer)`` read from a GGUF file: a plain HF ``*ForCausalLM`` in float32 (what the
    dequantised weights are), or in ``dtype``, and the tokenizer the file embeds."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file {path} not found")
    folder, name = str(path.parent), path.name
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    config = copy.deepcopy(loaded.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    state = loaded.state_dict()
    if dtype is not None:
        state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    config.dtype = next(iter(state.values())).dtype
    model = model_from_state_dict(config, state)
    model.generation_config = loaded.generation_config
    return model.eval(), tokenizer
