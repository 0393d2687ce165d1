"""A loaded HF model together with its family: the one way the rest of the package reaches into
a model (layers, probes for importance, backbone and head, config for a new shape)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

from ..arch import HybridArch
from .family import LayerRef, ModelFamily
from .mamba_layout import MambaShape
from .registry import family_for_model_type


class ModelAdapter:
    """Family-independent access to a causal LM of a supported family."""

    def __init__(self, model: nn.Module, family: ModelFamily):
        self.model = model
        self.family = family

    @property
    def arch(self) -> HybridArch:
        return self.family.arch_from_config(self.model.config)

    @property
    def mamba_shape(self) -> MambaShape:
        return MambaShape.of(self.arch)

    # --------------------------------------------------------------- modules
    @property
    def backbone(self) -> nn.Module:
        return self.family.backbone(self.model)

    @property
    def final_norm(self) -> nn.Module:
        return self.family.final_norm(self.model)

    @property
    def lm_head(self) -> nn.Module:
        return self.family.lm_head(self.model)

    def layers(self) -> list[LayerRef]:
        return self.family.layers(self.model, self.arch.pattern)

    def layer_modules(self) -> list[nn.Module]:
        """Per layer of ``arch.layers``, the module whose output skipping removes that layer (the blocks of
        one layer share it: a transformer's decoder layer holds its attention and its MLP block)."""
        blocks, modules = self.layers(), []
        for unit in self.arch.layers:
            module = blocks[unit[0]].block
            if any(blocks[b].block is not module for b in unit):
                raise ValueError(f"blocks {unit} form one layer but are not one module")
            modules.append(module)
        return modules

    def has_probe(self, layer: LayerRef, role: str) -> bool:
        return self.family.has_probe(layer, role)

    def probe(self, layer: LayerRef, role: str) -> nn.Module:
        """The sub-module of ``layer`` playing ``role`` (``family.IN_PROJ``, ``FFN_IN``, ...)."""
        return self.family.probe(layer, role)

    def ssm_mixers(self) -> list[nn.Module]:
        return self.family.ssm_mixers(self.model, self.arch.pattern)

    # --------------------------------------------------------------- config
    def config_for(self, arch: HybridArch, kept_layers: Sequence[int] | None = None) -> Any:
        """An HF config of this family for ``arch``, keeping every other field of the current config
        (per-layer fields: the entries of ``kept_layers``, see ``ModelFamily.hf_config``)."""
        return self.family.hf_config(arch, base=self.model.config, kept_layers=kept_layers)


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The adapter matching ``model.config.model_type`` (an ArchError for unsupported families)."""
    config = getattr(model, "config", None)
    return ModelAdapter(model, family_for_model_type(getattr(config, "model_type", None)))
