"""The supported model families: the one list, and lookups by name or HF ``model_type``."""

from __future__ import annotations

from ..arch import ArchError
from . import gemma3, llama, mamba2, mistral, nemotron_h, qwen2, qwen3
from .family import ModelFamily

#: Every supported family. Adding one is a file in this package plus one entry here.
FAMILIES: tuple[ModelFamily, ...] = (nemotron_h.FAMILY, mamba2.FAMILY, llama.FAMILY, qwen2.FAMILY, qwen3.FAMILY,
                                     mistral.FAMILY, gemma3.FAMILY)


def family_names() -> tuple[str, ...]:
    return tuple(f.name for f in FAMILIES)


def family_named(name: str) -> ModelFamily:
    """The family of ``HybridArch.family == name``."""
    for family in FAMILIES:
        if family.name == name:
            return family
    raise ArchError(f"family={name!r} is not supported; use one of {family_names()}")


def find_family(model_type: str | None) -> ModelFamily | None:
    """The family of HF checkpoints with this ``model_type``, or None."""
    return next((f for f in FAMILIES if f.model_type == model_type), None)


def family_for_model_type(model_type: str | None) -> ModelFamily:
    """The family of a config's ``model_type``, or an error naming the supported ones."""
    family = find_family(model_type)
    if family is None:
        raise ArchError(
            f"model_type={model_type!r} is not supported; supported families: {', '.join(family_names())}"
        )
    return family
