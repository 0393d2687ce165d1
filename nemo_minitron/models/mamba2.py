"""Mamba2 (``Mamba2ForCausalLM``): Mamba2 blocks only, under ``backbone.layers``.

Its config derives the inner width as ``expand * hidden_size``, so a shape must keep
heads * head_dim an integer multiple of the hidden size; embeddings may be tied.
"""

from __future__ import annotations

from typing import Any

from ..arch import MAMBA, ArchError, HybridArch
from .family import ModelFamily, prefixed
from .mamba_layout import MIXER_PROBES, MIXER_RULES


class Mamba2(ModelFamily):
    name = "mamba2"
    model_type = "mamba2"
    backbone_attr = "backbone"
    probes = {MAMBA: MIXER_PROBES}
    block_rules = {MAMBA: {"norm.weight": ("hidden",), **prefixed("mixer.", MIXER_RULES)}}
    model_rules = {
        "backbone.embeddings.weight": (None, "hidden"),
        "backbone.norm_f.weight": ("hidden",),
        "lm_head.weight": (None, "hidden"),
    }

    config_names = dict(
        hidden_size="hidden_size", vocab_size="vocab_size", mamba_num_heads="num_heads",
        mamba_head_dim="head_dim", mamba_num_groups="n_groups", mamba_state_dim="state_size",
        mamba_conv_kernel="conv_kernel", tie_word_embeddings="tie_word_embeddings", mamba_proj_bias="use_bias",
        mamba_conv_bias="use_conv_bias",
    )

    def config_class(self) -> type:
        from transformers import Mamba2Config

        return Mamba2Config

    def arch_from_config(self, cfg: Any) -> HybridArch:
        return HybridArch(family=self.name, pattern=MAMBA * cfg.num_hidden_layers, **self.read_named_fields(cfg))

    def config_fields(self, arch: HybridArch) -> dict[str, Any]:
        return dict(num_hidden_layers=arch.num_layers, expand=arch.mamba_inner_size // arch.hidden_size,
                    **self.named_fields(arch))

    def check_arch(self, arch: HybridArch) -> None:
        if set(arch.pattern) != {MAMBA}:
            raise ArchError(f"family='mamba2' models only have Mamba layers; got pattern {arch.pattern!r}")
        if arch.mamba_inner_size % arch.hidden_size:
            raise ArchError(
                f"Mamba2ForCausalLM needs mamba_num_heads*mamba_head_dim ({arch.mamba_inner_size}) to be an "
                f"integer multiple (config.expand) of hidden_size ({arch.hidden_size}); prune heads and "
                "hidden size together so the ratio stays an integer"
            )


FAMILY = Mamba2()
