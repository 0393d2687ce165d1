"""NemotronH (``NemotronHForCausalLM``): Mamba2, attention, MLP and MoE blocks under ``model.layers``.

Everything this package knows about the family: how its config spells a shape (the layer
pattern is saved as ``layers_block_type``; hub configs' ``hybrid_override_pattern`` and
``attention_head_dim`` are read, and written back for the hub's remote code), its module names,
its trim rules, and its quirks (lm_head is never tied; a model without attention layers is saved
with ``use_cache=False`` and needs a token-counting cache for cached generation).

MoE blocks (Nemotron 3 Nano): transformers holds the routed experts stacked (``mixer.experts.up_proj``
[experts, neurons, hidden], ``down_proj`` [experts, hidden, neurons]; hub checkpoints store them per expert, and
transformers' conversion mapping merges them on load and splits them again on save), a sigmoid top-k router
``mixer.gate`` (``weight`` [experts, hidden] plus the fp32 buffer ``e_score_correction_bias``) and a shared-expert
MLP. Latent MoE (``moe_latent_size``, Nemotron 3 Super) is refused. Multi-token-prediction (MTP) layers are never
carried: transformers does not build them and skips their ``mtp.*`` weights on load, so a saved model says
``num_nextn_predict_layers=0``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ..arch import ATTENTION, MAMBA, MLP, MOE, MOE_DEFAULTS, ArchError, HybridArch
from .attention_layout import ATTENTION_RULES
from .family import (FFN_IN, HEADS_OUT, ROUTED_EXPERTS, SHARED_FFN_IN, ModelFamily, RoutedCall, RoutedExperts,
                     prefixed)
from .mamba_layout import MIXER_PROBES, MIXER_RULES

#: Layer symbol -> ``layers_block_type`` entry.
_BLOCK_TYPES = {MAMBA: "linear_attention", ATTENTION: "full_attention", MLP: "mlp", MOE: "moe"}
#: ``layers_block_type`` entry -> symbol of ``hybrid_override_pattern`` (the hub's spelling).
_SYMBOLS = {kind: symbol for symbol, kind in _BLOCK_TYPES.items()}
#: HybridArch MoE field -> its NemotronHConfig field (written only for models with MoE blocks).
MOE_CONFIG_NAMES = dict(
    num_moe_experts="n_routed_experts", moe_router_topk="num_experts_per_tok", moe_ffn_hidden_size="moe_intermediate_size",
    moe_shared_expert_intermediate_size="moe_shared_expert_intermediate_size", moe_shared_experts="n_shared_experts",
    moe_router_num_groups="n_group", moe_router_group_topk="topk_group",
)
assert set(MOE_CONFIG_NAMES) == set(MOE_DEFAULTS)
#: Hub (NVIDIA remote code) spelling -> transformers' field. transformers reads the ``mamba_*``
#: spellings itself but ignores ``attention_head_dim`` (its ``head_dim`` then defaults to 128).
HUB_ALIASES = {
    "attention_head_dim": "head_dim", "mamba_n_groups": "n_groups", "mamba_d_conv": "conv_kernel",
    "mamba_expand": "expand", "mamba_chunk_size": "chunk_size", "mamba_conv_bias": "use_conv_bias",
    "mamba_dt_min": "time_step_min", "mamba_dt_max": "time_step_max", "mamba_dt_limit": "time_step_limit",
    "mamba_dt_init_floor": "time_step_floor",
}


class NemotronH(ModelFamily):
    name = "nemotron_h"
    model_type = "nemotron_h"
    backbone_attr = "model"
    probes = {MAMBA: MIXER_PROBES, MLP: {FFN_IN: "up_proj"}, ATTENTION: {HEADS_OUT: "o_proj"},
              MOE: {ROUTED_EXPERTS: "experts", SHARED_FFN_IN: "shared_experts.up_proj"}}
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
        MOE: {
            "norm.weight": ("hidden",),
            "mixer.gate.weight": ("experts", "hidden"),
            "mixer.gate.e_score_correction_bias": ("experts",),
            "mixer.experts.up_proj": ("experts", "expert_ffn", "hidden"),
            "mixer.experts.down_proj": ("experts", "hidden", "expert_ffn"),
            "mixer.shared_experts.up_proj.weight": ("shared_ffn", "hidden"),
            "mixer.shared_experts.up_proj.bias": ("shared_ffn",),
            "mixer.shared_experts.down_proj.weight": ("hidden", "shared_ffn"),
            "mixer.shared_experts.down_proj.bias": ("hidden",),
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
        mamba_proj_bias="use_bias", mamba_conv_bias="use_conv_bias", mlp_bias="mlp_bias", **MOE_CONFIG_NAMES,
    )
    #: The pattern is written as ``layers_block_type``; these older spellings would contradict it.
    stale_config_fields = ("hybrid_override_pattern", "num_hidden_layers", "layer_types")

    def config_class(self) -> type:
        from transformers import NemotronHConfig

        return NemotronHConfig

    def arch_from_config(self, cfg: Any) -> HybridArch:
        pattern = cfg.hybrid_override_pattern
        if MOE in pattern and getattr(cfg, "moe_latent_size", None) is not None:
            raise ArchError(f"moe_latent_size={cfg.moe_latent_size}: latent MoE blocks (Nemotron 3 Super) are not "
                            "supported; MoE blocks whose experts read the hidden state directly (Nemotron 3 Nano) are")
        # NemotronHForCausalLM has no tied-weights keys: lm_head is always its own tensor.
        return HybridArch(family=self.name, pattern=pattern, tie_word_embeddings=False,
                          **self.read_named_fields(cfg))

    def config_fields(self, arch: HybridArch) -> dict[str, Any]:
        fields = self.named_fields(arch)
        if MOE not in arch.pattern:  # a base config's MoE settings (or transformers' defaults) stay as they were
            for name in MOE_CONFIG_NAMES.values():
                del fields[name]
        return dict(layers_block_type=[_BLOCK_TYPES[s] for s in arch.pattern],
                    tie_word_embeddings=arch.tie_word_embeddings, num_nextn_predict_layers=0, **fields)

    def check_arch(self, arch: HybridArch) -> None:
        if arch.tie_word_embeddings:
            raise ArchError(
                "tie_word_embeddings=True: NemotronHForCausalLM (transformers) never ties lm_head to the "
                "embeddings, so the model would have both; use tie_word_embeddings=False"
            )

    def hub_config_fixes(self, raw: dict[str, Any]) -> dict[str, Any]:
        hub, native = raw.get("attention_head_dim"), raw.get("head_dim")
        if hub is None:
            return {}
        if native is not None and native != hub:
            raise ArchError(f"config.json has attention_head_dim={hub} (the hub's spelling) but head_dim={native} "
                            "(transformers'); they must agree")
        return {"head_dim": hub}

    def hub_spelling(self, saved: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
        """The hub's remote ``NemotronHConfig`` takes ``hybrid_override_pattern`` + ``num_hidden_layers``
        (``layers_block_type`` is a read-only property there) and its own ``HUB_ALIASES`` spellings."""
        out = dict(saved)
        for hub, native in HUB_ALIASES.items():
            if hub in source and native in saved:
                out[hub] = saved[native]
        if "hybrid_override_pattern" in source and "layers_block_type" not in source:
            kinds = out.pop("layers_block_type")
            out["hybrid_override_pattern"] = "".join(_SYMBOLS[kind] for kind in kinds)
            out["num_hidden_layers"] = len(kinds)
        return out

    def routed_experts(self, module: nn.Module) -> RoutedExperts:
        return RoutedExperts(up=module.up_proj, down=module.down_proj, act=module.act_fn)

    def routed_call(self, args: tuple, kwargs: dict) -> RoutedCall:
        """``NemotronHExperts.forward(hidden_states, top_k_index, top_k_weights)``."""
        names = ("hidden_states", "top_k_index", "top_k_weights")
        values = list(args) + [kwargs[name] for name in names[len(args):]]
        return RoutedCall(*values[:3])

    def plain_runtime_fields(self, arch: HybridArch) -> dict[str, Any]:
        """Without attention, a default (cached) forward crashes in transformers 5.23 (docs/pruning.md,
        "Known upstream issues"); ``use_cache=False`` makes ``model(ids)`` and ``generate`` work."""
        return {} if ATTENTION in arch.pattern else {"use_cache": False}

    def needs_counting_cache(self, arch: HybridArch) -> bool:
        """transformers 5.23 sizes a NemotronH cache from its first attention layer and fails without one."""
        return ATTENTION not in arch.pattern


FAMILY = NemotronH()
