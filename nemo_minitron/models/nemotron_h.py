"""NemotronH (``NemotronHForCausalLM``): Mamba2, attention and MLP blocks under ``model.layers``.

Everything this package knows about the family: how its config spells a shape (the layer
pattern is saved as ``layers_block_type``), its module names, its trim rules, and its quirks
(lm_head is never tied; a model without attention layers needs a token-counting generation cache).
"""

from __future__ import annotations

from typing import Any

from ..arch import ATTENTION, MAMBA, MLP, ArchError, HybridArch
from .attention_layout import ATTENTION_RULES
from .family import FFN_IN, HEADS_OUT, ModelFamily, prefixed
from .mamba_layout import MIXER_PROBES, MIXER_RULES

#: Layer symbol -> ``layers_block_type`` entry.
_BLOCK_TYPES = {MAMBA: "linear_attention", ATTENTION: "full_attention", MLP: "mlp"}


class NemotronH(ModelFamily):
    name = "nemotron_h"
    model_type = "nemotron_h"
    backbone_attr = "model"
    probes = {MAMBA: MIXER_PROBES, MLP: {FFN_IN: "up_proj"}, ATTENTION: {HEADS_OUT: "o_proj"}}
    block_rules = {
        MAMBA: {"norm.weight": ("hidden",), **prefixed("mixer.", MIXER_RULES)},
        ATTENTION: {"norm.weight": ("hidden",), **prefixed("mixer.", ATTENTION_RULES)},
        MLP: {
            "norm.weight": ("hidden",),
            "mixer.up_proj.weight": ("ffn", "hidden"),
            "mixer.up_proj.bias": ("ffn",),
            "mixer.down_proj.weight": ("hidden", "ffn"),
            "mixer.down_proj.bias": ("hidden",),
        },
    }
    model_rules = {
        "model.embeddings.weight": (None, "hidden"),
        "model.norm_f.weight": ("hidden",),
        "lm_head.weight": (None, "hidden"),
    }
    config_names = dict(
        hidden_size="hidden_size", vocab_size="vocab_size", ffn_hidden_size="intermediate_size",
        num_attention_heads="num_attention_heads", num_query_groups="num_key_value_heads",
        attention_head_dim="head_dim", mamba_num_heads="mamba_num_heads", mamba_head_dim="mamba_head_dim",
        mamba_num_groups="n_groups", mamba_state_dim="ssm_state_size", mamba_conv_kernel="conv_kernel",
        mamba_proj_bias="use_bias", mamba_conv_bias="use_conv_bias", mlp_bias="mlp_bias",
    )
    #: The pattern is written as ``layers_block_type``; these older spellings would contradict it.
    stale_config_fields = ("hybrid_override_pattern", "num_hidden_layers", "layer_types")

    def config_class(self) -> type:
        from transformers import NemotronHConfig

        return NemotronHConfig

    def arch_from_config(self, cfg: Any) -> HybridArch:
        pattern = cfg.hybrid_override_pattern
        if "E" in pattern:
            raise ArchError("MoE layers ('E' in hybrid_override_pattern) are not supported yet")
        # NemotronHForCausalLM has no tied-weights keys: lm_head is always its own tensor.
        return HybridArch(family=self.name, pattern=pattern, tie_word_embeddings=False,
                          **self.read_named_fields(cfg))

    def config_fields(self, arch: HybridArch) -> dict[str, Any]:
        return dict(layers_block_type=[_BLOCK_TYPES[s] for s in arch.pattern],
                    tie_word_embeddings=arch.tie_word_embeddings, **self.named_fields(arch))

    def check_arch(self, arch: HybridArch) -> None:
        if arch.tie_word_embeddings:
            raise ArchError(
                "tie_word_embeddings=True: NemotronHForCausalLM (transformers) never ties lm_head to the "
                "embeddings, so the model would have both; use tie_word_embeddings=False"
            )

    def needs_counting_cache(self, arch: HybridArch) -> bool:
        """transformers 5.23 sizes a NemotronH cache from its first attention layer and fails without one."""
        return ATTENTION not in arch.pattern


FAMILY = NemotronH()
