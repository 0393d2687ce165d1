"""Adapters for the supported HF model families, and checkpoint I/O."""

from . import mamba2, nemotron_h  # noqa: F401  (register the families)
from .base import AttentionView, LayerRef, MambaView, MLPView, ModelAdapter, adapter_for, check_model_type
from .io import (atomic_directory, build_model, is_complete_checkpoint, load_config, load_model, load_tokenizer,
                 read_config_json, save_checkpoint)
from .mamba_layout import (MambaShape, merge_conv, merge_in_proj, split_conv, split_in_proj)

__all__ = [
    "AttentionView", "LayerRef", "MambaView", "MLPView", "ModelAdapter", "adapter_for", "check_model_type",
    "atomic_directory", "build_model", "is_complete_checkpoint", "load_config", "load_model", "load_tokenizer",
    "read_config_json", "save_checkpoint", "MambaShape", "merge_conv", "merge_in_proj", "split_conv",
    "split_in_proj",
]
