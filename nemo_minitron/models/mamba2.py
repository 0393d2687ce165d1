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

    def config_class(self) -> type:
        from transformers import Mamba2Config

        return Mamba2Config

    def arch_from_config(self, cfg: Any) -> HybridArch:
        return HybridArch(
            family=self.name,
            pattern=MAMBA * cfg.num_hidden_layers,
            hidden_size=cfg.hidden_size,
            vocab_size=cfg.vocab_size,
            mamba_num_heads=cfg.num_heads,
            mamba_head_dim=cfg.head_dim,
            mamba_num_groups=cfg.n_groups,
            mamba_state_dim=cfg.state_size,
            mamba_conv_kernel=cfg.conv_kernel,
            tie_word_embeddings=bool(cfg.tie_word_embeddings),
            mamba_proj_bias=bool(cfg.use_bias),
            mamba_conv_bias=bool(cfg.use_conv_bias),
        )

    def config_fields(self, arch: HybridArch) -> dict[str, Any]:
        return dict(
            hidden_size=arch.hidden_size, vocab_size=arch.vocab_size, num_hidden_layers=arch.num_layers,
            num_heads=arch.mamba_num_heads, head_dim=arch.mamba_head_dim,
            expand=arch.mamba_inner_size // arch.hidden_size, n_groups=arch.mamba_num_groups,
            state_size=arch.mamba_state_dim, conv_kernel=arch.mamba_conv_kernel,
            tie_word_embeddings=arch.tie_word_embeddings, use_bias=arch.mamba_proj_bias,
            use_conv_bias=arch.mamba_conv_bias,
        )

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
