"""Load any local HF checkpoint folder of a supported family; save one atomically.

A crashed or interrupted save must never leave something that looks like a checkpoint, so
saves go to a hidden temporary sibling folder that is renamed into place at the end. Saved
checkpoints keep the source's dtype (unless told otherwise), run in plain ``transformers``
(the family's run-time config fields), and either carry the source's remote code with a config
that code can read, or no ``auto_map``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..arch import ArchError, HybridArch
from ..atomic import atomic_directory
from .registry import family_for_model_type, family_named, find_family

#: dtype names a stage's ``dtype=`` accepts (and checkpoints' ``dtype`` / ``torch_dtype``).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16,
                                  "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin")


def read_config_json(path: str | os.PathLike) -> dict[str, Any]:
    """The raw ``config.json`` of a checkpoint folder, with clear errors for a wrong path."""
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder {folder} does not exist (model_path / teacher_path / ...)")
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: {folder} is not a Hugging Face checkpoint folder")
    return json.loads(config_file.read_text())


def check_checkpoint(path: str | os.PathLike, argument: str = "model_path", any_family: bool = False) -> None:
    """Check a checkpoint folder without reading weights: config, weight files, family, hub quirks.

    Stages call it for every input model before loading any, so a wrong path fails at once and
    names the argument."""
    try:
        raw = read_config_json(path)
        if not any(any(Path(path).glob(pattern)) for pattern in WEIGHT_FILES):
            raise FileNotFoundError(f"{path} holds no weights (*.safetensors or pytorch_model*.bin)")
        family = find_family(raw.get("model_type")) if any_family else family_for_model_type(raw.get("model_type"))
        if family is not None:
            family.hub_config_fixes(raw)
    except (OSError, ValueError) as err:  # the same kind of error, naming the argument
        kind = next(k for k in (FileNotFoundError, ArchError, OSError, ValueError) if isinstance(err, k))
        raise kind(f"{argument}={path}: {err}") from None


def _config_fixes(path: str | os.PathLike) -> dict[str, Any]:
    """The family's fixes for hub spellings transformers ignores (``{}`` for unknown families)."""
    raw = read_config_json(path)
    family = find_family(raw.get("model_type"))
    return family.hub_config_fixes(raw) if family is not None else {}


def load_config(path: str | os.PathLike) -> Any:
    """The HF config of a local checkpoint folder, checked to be a supported family (no weights read)."""
    from transformers import AutoConfig

    family_for_model_type(read_config_json(path).get("model_type"))
    return AutoConfig.from_pretrained(str(path), local_files_only=True, **_config_fixes(path))


def load_model(path: str | os.PathLike, dtype: torch.dtype | str | None = None, device: str | None = None,
               any_family: bool = False) -> nn.Module:
    """Load a ``*ForCausalLM`` of a supported family from a local folder (never from a hub), in ``dtype`` (fp32 by default).

    ``dtype`` defaults to float32; ``"auto"`` keeps the checkpoint's own. ``any_family=True`` accepts any
    ``AutoModelForCausalLM`` checkpoint (evaluation needs no family knowledge); otherwise the family must
    be one pruning supports.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    model_type = read_config_json(path).get("model_type")  # a clear error for a wrong folder
    if not any_family:
        family_for_model_type(model_type)
    fixes = _config_fixes(path)
    config = {"config": AutoConfig.from_pretrained(str(path), local_files_only=True, **fixes)} if fixes else {}
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=dtype or torch.float32, local_files_only=True, **config,
    )
    return model.to(device) if device else model


def checkpoint_dtype(path: str | os.PathLike) -> torch.dtype:
    """The dtype a checkpoint's weights were saved in (its config's ``dtype``; fp32 if unsaid)."""
    raw = read_config_json(path)
    name = str(raw.get("dtype") or raw.get("torch_dtype") or "float32").removeprefix("torch.")
    return DTYPES.get(name, torch.float32)


def output_dtype(dtype: str | None, source: str | os.PathLike | None = None) -> torch.dtype:
    """The dtype to save in: ``dtype`` by name, else the ``source`` checkpoint's, else fp32."""
    if dtype is None:
        return checkpoint_dtype(source) if source is not None else torch.float32
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise ValueError(f"dtype={dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.bfloat16`` -> ``"bfloat16"`` (how summaries record it)."""
    return str(dtype).removeprefix("torch.")


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


def reshaped_model(source: nn.Module, config: Any, state: dict[str, torch.Tensor]) -> nn.Module:
    """A model of ``config`` holding ``state``, made from ``source`` (pruned or widened): in the source's
    dtype, device and training mode, with a *copy* of its generation config (saving the new model may
    change it, e.g. use_cache=False without attention, which must not reach the source: its later
    ``generate`` calls would run uncached)."""
    param = next(source.parameters())
    config.dtype = param.dtype
    model = model_from_state_dict(config, state, param.device)
    model.generation_config = copy.deepcopy(source.generation_config)
    model.train(source.training)
    return model


def save_checkpoint(model: nn.Module, path: str | os.PathLike, tokenizer: Any | None = None,
                    extra: Callable[[Path], None] | None = None, source: str | os.PathLike | None = None,
                    dtype: torch.dtype | None = None) -> Path:
    """Save model (safetensors), tokenizer and any extra files atomically into ``path``.

    ``extra(folder)`` may write more files (plans, scores, metrics) into the same folder before
    it is renamed into place, so a checkpoint and its metadata appear together or not at all.
    ``dtype`` casts the model (in place) first. The family's run-time fields are set so a plain
    ``AutoModelForCausalLM`` forward / ``generate`` works (e.g. ``use_cache=False`` for a NemotronH
    without attention). A config with ``auto_map`` keeps it only when ``source`` has the code
    files, which are copied along (the config then uses the source's spellings); else it is dropped.
    """
    path = Path(path)
    if dtype is not None:
        cast_keeping_fp32_modules(model, dtype)
    _set_runtime_fields(model)
    with atomic_directory(path) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        _carry_remote_code(tmp, source)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        if extra is not None:
            extra(tmp)
    return path


def cast_keeping_fp32_modules(model: nn.Module, dtype: torch.dtype) -> nn.Module:
    """``model.to(dtype)``, except the tensors the model class keeps in float32 whatever its dtype
    (``_keep_in_fp32_modules_strict``, e.g. NemotronH's router ``e_score_correction_bias``), as
    ``from_pretrained`` does: a bf16 copy of them would lose the precision the checkpoint stores."""
    keep = set(getattr(model, "_keep_in_fp32_modules_strict", None) or ())
    kept = {name: tensor.detach().float().clone() for name, tensor in [*model.named_parameters(), *model.named_buffers()]
            if keep.intersection(name.split(".")) and tensor.is_floating_point()}
    model.to(dtype)  # replaces buffers by new tensors: restore the kept ones by name
    for name, fp32 in kept.items():
        owner_name, _, attr = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if attr in dict(owner.named_parameters(recurse=False)):
            getattr(owner, attr).data = fp32
        else:
            setattr(owner, attr, fp32)  # a registered buffer: Module.__setattr__ replaces it
    return model


def _set_runtime_fields(model: nn.Module) -> None:
    """Config (and generation config) values plain transformers needs to run this model's shape."""
    config = getattr(model, "config", None)
    family = find_family(getattr(config, "model_type", None))
    if family is None:
        return
    try:
        arch = family.arch_from_config(config)
    except ArchError:  # a shape this package does not model (e.g. latent MoE): saved as it is
        return
    for name, value in family.plain_runtime_fields(arch).items():
        setattr(config, name, value)
        generation = getattr(model, "generation_config", None)
        if generation is not None and hasattr(generation, name):
            setattr(generation, name, value)


def remote_code_files(folder: str | os.PathLike, auto_map: dict[str, Any]) -> list[Path] | None:
    """The ``*.py`` files of ``folder`` that ``auto_map``'s local references need, or None when
    one is missing (or lives in another hub repository, ``repo--module.Class``)."""
    refs = [r for value in auto_map.values() for r in (value if isinstance(value, (list, tuple)) else [value]) if r]
    files = []
    for ref in refs:
        module = str(ref).rsplit(".", 1)[0]
        file = Path(folder) / f"{module.replace('.', '/')}.py"
        if "--" in str(ref) or not file.is_file():
            return None
        files.append(file)
    return files


def _carry_remote_code(saved: Path, source: str | os.PathLike | None) -> None:
    """Copy the source's remote code next to a saved config that names it, or drop ``auto_map``."""
    config_file = saved / "config.json"
    config = json.loads(config_file.read_text())
    auto_map = config.get("auto_map")
    if not auto_map:
        return
    needed = remote_code_files(source, auto_map) if source is not None and Path(source).is_dir() else None
    if needed:
        for file in sorted(set(Path(source).glob("*.py")) | set(needed)):  # helper modules the code imports too
            shutil.copy2(file, saved / file.name)
        family = find_family(config.get("model_type"))
        if family is not None:
            config = family.hub_spelling(config, read_config_json(source))
    else:
        config.pop("auto_map")
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """True when ``path`` holds a finished save (config plus weights)."""
    folder = Path(path)
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))
