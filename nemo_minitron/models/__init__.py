"""All model-family knowledge (one file per family, listed in ``registry``), and checkpoint I/O."""

from .adapter import ModelAdapter, adapter_for
from .family import LayerRef, ModelFamily, TrimRule
from .io import build_model, is_complete_checkpoint, load_config, load_model, load_tokenizer, read_config_json, save_checkpoint
from .registry import FAMILIES, family_for_model_type, family_named, find_family

__all__ = [
    "ModelAdapter", "adapter_for", "LayerRef", "ModelFamily", "TrimRule", "build_model", "is_complete_checkpoint",
    "load_config", "load_model", "load_tokenizer", "read_config_json", "save_checkpoint", "FAMILIES",
    "family_for_model_type", "family_named", "find_family",
]
