"""Load any local HF checkpoint folder of a supported family; save one atomically.

A crashed or interrupted save must never leave something that looks like a checkpoint, so
saves go to a hidden temporary sibling folder that is renamed into place at the end.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..arch import HybridArch
from ..atomic import atomic_directory
from .registry import family_for_model_type, family_named


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a checkpoint folder, with clear errors for a wrong path."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist (model_path / teacher_path / ...)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {folder} is not a Hugging Face checkpoint folder")
    return json.loads(config_file.read_text())


def load_config(path: str | os.PathLike) -> Any:
    """The HF config of a local checkpoint folder, checked to be a supported family (no weights read)."""
    from transformers import AutoConfig

    family_for_model_type(read_config_json(path).get("model_type"))
    return AutoConfig.from_pretrained(str(path), local_files_only=True)


def load_model(path: str | os.PathLike, dtype: torch.dtype | str | None = None, device: str | None = None,
               any_family: bool = False) -> nn.Module:
    """Load a ``*ForCausalLM`` of a supported family from a local folder (never from a hub).

    ``dtype`` defaults to float32; ``"auto"`` keeps the checkpoint's own. ``any_family=True`` accepts any
    ``AutoModelForCausalLM`` checkpoint (evaluation needs no family knowledge); otherwise the family must
    be one pruning supports.
    """
    from transformers import AutoModelForCausalLM

    model_type = read_config_json(path).get("model_type")  # a clear error for a wrong folder
    if not any_family:
        family_for_model_type(model_type)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype or torch.float32, local_files_only=True,
    )
    return model.to(device) if device else model


def load_tokenizer(path: str | os.PathLike) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def build_model(arch: HybridArch, base_config: Any | None = None, seed: int | None = None,
                device: str | torch.device | None = None) -> nn.Module:
    """A randomly initialised HF model of the given shape."""
    from transformers import AutoModelForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    config = family_named(arch.family).hf_config(arch, base=base_config)
    with torch.device(device or "cpu"):
        return AutoModelForCausalLM.from_config(config)


def model_from_state_dict(config: Any, state: dict[str, torch.Tensor],
                          device: str | torch.device = "cpu") -> nn.Module:
    """An ordinary HF model of ``config`` holding the tensors of ``state`` (taken over, not copied).

    Parameters are allocated uninitialised, then replaced. The model is built on the real device (not
    "meta") so the non-persistent buffers its forward needs (rotary frequencies, embedding scales) exist.
    """
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    with no_init_weights(), torch.device(device):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(state, strict=True, assign=True)
    if getattr(config, "tie_word_embeddings", False):
        # load_state_dict(assign=True) installs two separate tensors; share them again.
        model.get_output_embeddings().weight = model.get_input_embeddings().weight
    return model


def save_checkpoint(model: nn.Module, path: str | os.PathLike, tokenizer: Any | None = None,
                    extra: Callable[[Path], None] | None = None) -> Path:
    """Save model (safetensors), tokenizer and any extra files atomically into ``path``.

    ``extra(folder)`` may write more files (plans, scores, metrics) into the same folder before
    it is renamed into place, so a checkpoint and its metadata appear together or not at all.
    """
    path = Path(path)
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
    return path


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a finished save (config plus weights)."""
    folder = Path(path)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
