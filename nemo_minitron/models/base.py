"""One interface over the hybrid model families, so pruning code never asks which family it has.

An adapter wraps a loaded HF ``*ForCausalLM`` and answers: which layers exist and of what kind,
where their norms / mixers / projections are, where the embeddings, final norm and LM head are,
and how the family spells its config. Families add a file in this package and register here.
"""

from __future__ import annotations

from abc import ABC
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ..arch import ATTENTION, MAMBA, MLP, SUPPORTED_FAMILIES, ArchError, HybridArch
from .mamba_layout import MambaShape, split_conv, split_in_proj


@dataclass(frozen=True)
class LayerRef:
    """One residual block: ``x + mixer(norm(x))``."""

    index: int
    kind: str  # MAMBA, ATTENTION or MLP
    block: nn.Module

    @property
    def norm(self) -> nn.Module:
        return self.block.norm

    @property
    def mixer(self) -> nn.Module:
        return self.block.mixer


@dataclass(frozen=True)
class MambaView:
    """Named access to a Mamba2 mixer's parameters (identical layout in every family)."""

    mixer: nn.Module
    shape: MambaShape

    @property
    def in_proj(self) -> nn.Linear:
        return self.mixer.in_proj

    @property
    def conv1d(self) -> nn.Conv1d:
        return self.mixer.conv1d

    @property
    def out_proj(self) -> nn.Linear:
        return self.mixer.out_proj

    @property
    def gated_norm(self) -> nn.Module:
        """RMSNorm over groups of I/G channels, gated by z."""
        return self.mixer.norm

    @property
    def A_log(self) -> nn.Parameter:
        return self.mixer.A_log

    @property
    def D(self) -> nn.Parameter:
        return self.mixer.D

    @property
    def dt_bias(self) -> nn.Parameter:
        return self.mixer.dt_bias

    def projections(self) -> dict[str, torch.Tensor]:
        """Views of in_proj rows: z, x, B, C, dt (each [rows, hidden])."""
        return split_in_proj(self.in_proj.weight, self.shape)

    def conv_weights(self) -> dict[str, torch.Tensor]:
        """Views of the depthwise conv weights over x, B, C (each [channels, 1, K])."""
        return split_conv(self.conv1d.weight, self.shape)


@dataclass(frozen=True)
class AttentionView:
    module: nn.Module

    @property
    def q_proj(self) -> nn.Linear:
        return self.module.q_proj

    @property
    def k_proj(self) -> nn.Linear:
        return self.module.k_proj

    @property
    def v_proj(self) -> nn.Linear:
        return self.module.v_proj

    @property
    def o_proj(self) -> nn.Linear:
        return self.module.o_proj


@dataclass(frozen=True)
class MLPView:
    module: nn.Module

    @property
    def up_proj(self) -> nn.Linear:
        return self.module.up_proj

    @property
    def down_proj(self) -> nn.Linear:
        return self.module.down_proj


class ModelAdapter(ABC):
    """Family-independent access to a hybrid causal LM."""

    family: ClassVar[str]
    model_type: ClassVar[str]
    #: Attribute of the CausalLM holding the backbone (``model`` / ``backbone``).
    backbone_attr: ClassVar[str]

    def __init__(self, model: nn.Module):
        self.model = model

    # --------------------------------------------------------------- shape
    @property
    def arch(self) -> HybridArch:
        return HybridArch.from_hf_config(self.model.config)

    @property
    def mamba_shape(self) -> MambaShape:
        a = self.arch
        return MambaShape(a.mamba_num_heads, a.mamba_head_dim, a.mamba_num_groups, a.mamba_state_dim)

    # --------------------------------------------------------------- modules
    @property
    def backbone(self) -> nn.Module:
        return getattr(self.model, self.backbone_attr)

    @property
    def embeddings(self) -> nn.Embedding:
        return self.backbone.embeddings

    @property
    def final_norm(self) -> nn.Module:
        return self.backbone.norm_f

    @property
    def lm_head(self) -> nn.Linear:
        return self.model.lm_head

    def layer_prefix(self, index: int) -> str:
        """State-dict key prefix of layer ``index``."""
        return f"{self.backbone_attr}.layers.{index}."

    def layers(self) -> list[LayerRef]:
        pattern = self.arch.pattern
        blocks = list(self.backbone.layers)
        if len(blocks) != len(pattern):
            raise ArchError(f"model has {len(blocks)} layers but its config pattern has {len(pattern)}")
        return [LayerRef(i, kind, block) for i, (kind, block) in enumerate(zip(pattern, blocks))]

    def layers_of(self, kind: str) -> list[LayerRef]:
        return [layer for layer in self.layers() if layer.kind == kind]

    def mamba(self, layer: LayerRef) -> MambaView:
        _expect(layer, MAMBA)
        return MambaView(layer.mixer, self.mamba_shape)

    def attention(self, layer: LayerRef) -> AttentionView:
        _expect(layer, ATTENTION)
        return AttentionView(layer.mixer)

    def mlp(self, layer: LayerRef) -> MLPView:
        _expect(layer, MLP)
        return MLPView(layer.mixer)

    # --------------------------------------------------------------- config
    def config_for(self, arch: HybridArch) -> Any:
        """An HF config of this family for ``arch``, keeping every other field of the current config."""
        return arch.to_hf_config(base=self.model.config)


def _expect(layer: LayerRef, kind: str) -> None:
    if layer.kind != kind:
        raise TypeError(f"layer {layer.index} is {layer.kind!r}, not {kind!r}")


_REGISTRY: dict[str, type[ModelAdapter]] = {}


def register(cls: type[ModelAdapter]) -> type[ModelAdapter]:
    _REGISTRY[cls.model_type] = cls
    return cls


def check_model_type(model_type: str | None) -> type[ModelAdapter]:
    """The adapter class for a config's ``model_type``, or an error naming the supported ones."""
    try:
        return _REGISTRY[model_type]  # type: ignore[index]
    except KeyError:
        raise ArchError(
            f"model_type={model_type!r} is not supported; supported families: {', '.join(SUPPORTED_FAMILIES)}"
        ) from None


def adapter_for(model: nn.Module) -> ModelAdapter:
    """The adapter matching ``model.config.model_type``."""
    return check_model_type(getattr(model.config, "model_type", None))(model)
