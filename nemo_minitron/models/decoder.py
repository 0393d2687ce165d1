"""Plain transformer decoders (``LlamaForCausalLM`` and kin): what their HF models share, once.

A decoder layer ``model.layers[i]`` is two residual blocks of the layer pattern: block 2i is
``x + self_attn(pre_norm(x))`` and block 2i+1 is ``x + mlp(pre_norm(x))``, so the pattern is ``*-``
repeated and a layer (what depth pruning keeps or drops, and layer importance scores) is both
blocks. Family files (``llama.py``, ``qwen2.py``, ...) subclass :class:`DecoderFamily` and state only
what differs: config class and field names, fixed biases / q-k norms, the names of their norms
(Gemma3 also normalises each mixer's output), and width-dependent quirks.

Axes (as in the original Minitron, arXiv 2407.14679): hidden size (embeddings, every norm, the LM
head), FFN neurons (gate and up rows with down columns), query heads ranked within their KV group
(their q rows and bias, their o_proj columns; KV heads kept whole), and depth.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any, ClassVar

from torch import nn

from ..arch import ATTENTION, DECODER_LAYER, MLP, ArchError, HybridArch
from .attention_layout import ATTENTION_RULES
from .family import FFN_ACT, HEADS_OUT, Axes, LayerRef, ModelFamily, TrimRule, prefixed

#: Trim rules of a gated MLP (keys below it): one FFN neuron is a gate row, an up row and a down column.
GATED_MLP_RULES: dict[str, Axes] = {
    "gate_proj.weight": ("ffn", "hidden"),
    "gate_proj.bias": ("ffn",),
    "up_proj.weight": ("ffn", "hidden"),
    "up_proj.bias": ("ffn",),
    "down_proj.weight": ("hidden", "ffn"),
    "down_proj.bias": ("hidden",),
}

#: HybridArch field -> HF config field, the same in every decoder family.
DECODER_CONFIG_NAMES = dict(
    hidden_size="hidden_size", vocab_size="vocab_size", ffn_hidden_size="intermediate_size",
    num_attention_heads="num_attention_heads", num_query_groups="num_key_value_heads",
    tie_word_embeddings="tie_word_embeddings",
)
#: ``attention_bias`` gives q, k, v and o_proj biases together (Llama, Qwen3, Gemma3).
ATTENTION_BIAS_NAMES = dict(qkv_bias="attention_bias", attention_out_bias="attention_bias")


class DecoderFamily(ModelFamily):
    """A ``*ForCausalLM`` with ``model.embed_tokens``, ``model.layers[i].{self_attn, mlp, norms}``,
    ``model.norm`` and ``lm_head``."""

    backbone_attr = "model"
    final_norm_attr = "norm"
    blocks_per_layer = 2
    per_layer_config_fields = ("layer_types",)
    config_names = DECODER_CONFIG_NAMES
    fixed_flags = {"mlp_gated": True}
    #: Block kind -> the decoder layer's attribute normalising that block's input.
    pre_norms: ClassVar[dict[str, str]] = {ATTENTION: "input_layernorm", MLP: "post_attention_layernorm"}
    #: Block kind -> the norm applied to its mixer's output before the residual add (Gemma3); none by default.
    post_norms: ClassVar[dict[str, str]] = {}
    mixers: ClassVar[dict[str, str]] = {ATTENTION: "self_attn", MLP: "mlp"}
    #: The config class refuses a hidden_size that is not a multiple of num_attention_heads, even with an
    #: explicit head_dim (transformers 5.23: LlamaConfig, Gemma3TextConfig), so pruned shapes must keep it.
    hidden_divisible_by_heads: ClassVar[bool] = False
    #: Attention heads are scored on the o_proj input; FFN neurons on the down_proj input, act(gate) * up.
    probes = {ATTENTION: {HEADS_OUT: "o_proj"}, MLP: {FFN_ACT: "down_proj"}}
    model_rules = {
        "model.embed_tokens.weight": (None, "hidden"),
        "model.norm.weight": ("hidden",),
        "lm_head.weight": (None, "hidden"),
    }

    # ------------------------------------------------------------------ HF config <-> shape
    def arch_from_config(self, cfg: Any) -> HybridArch:
        head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
        return HybridArch(family=self.name, pattern=DECODER_LAYER * cfg.num_hidden_layers,
                          attention_head_dim=head_dim, **self.fixed_flags, **self.read_named_fields(cfg))

    def config_fields(self, arch: HybridArch) -> dict[str, Any]:
        # head_dim is always written: pruning heads or hidden size must not change it.
        return dict(num_hidden_layers=arch.num_layers, head_dim=arch.attention_head_dim, **self.named_fields(arch))

    def check_arch(self, arch: HybridArch) -> None:
        if arch.pattern != DECODER_LAYER * (len(arch.pattern) // 2):
            raise ArchError(f"family={self.name!r} models are decoder layers (attention then MLP): the pattern must be "
                            f"{DECODER_LAYER!r} repeated, got {arch.pattern!r}")
        if self.hidden_divisible_by_heads and arch.hidden_size % arch.num_attention_heads:
            raise ArchError(f"hidden_size={arch.hidden_size} must be a multiple of num_attention_heads="
                            f"{arch.num_attention_heads}: transformers refuses other {self.config_class().__name__}s "
                            "(even with an explicit head_dim); prune hidden size and heads to a divisible pair")

    # ------------------------------------------------------------------ module paths
    def layers(self, model: nn.Module, pattern: str) -> list[LayerRef]:
        decoder_layers = list(self.backbone(model).layers)
        if 2 * len(decoder_layers) != len(pattern):
            raise ArchError(f"model has {len(decoder_layers)} decoder layers but its pattern has {len(pattern)} blocks")
        refs = []
        for i, kind in enumerate(pattern):
            layer = decoder_layers[i // 2]
            refs.append(LayerRef(i, kind, layer, getattr(layer, self.pre_norms[kind]), getattr(layer, self.mixers[kind])))
        return refs

    # ------------------------------------------------------------------ trimming
    @cached_property
    def block_rules(self) -> dict[str, dict[str, Axes]]:  # type: ignore[override]
        """Block kind -> key below the decoder layer -> axes."""
        rules: dict[str, dict[str, Axes]] = {
            ATTENTION: prefixed(f"{self.mixers[ATTENTION]}.", ATTENTION_RULES),
            MLP: prefixed(f"{self.mixers[MLP]}.", GATED_MLP_RULES),
        }
        for norms in (self.pre_norms, self.post_norms):
            for kind, attr in norms.items():
                rules[kind][f"{attr}.weight"] = ("hidden",)
        return rules

    @cached_property
    def _kind_of_suffix(self) -> dict[str, str]:
        return {suffix: kind for kind, rules in self.block_rules.items() for suffix in rules}

    def layer_rule(self, layer: int, suffix: str, pattern: str) -> TrimRule | None:
        """Decoder layer ``layer`` holds blocks 2*layer (attention) and 2*layer + 1 (MLP)."""
        kind = self._kind_of_suffix.get(suffix)
        if kind is None or 2 * layer + 1 >= len(pattern):
            return None
        return TrimRule(self.block_rules[kind][suffix], 2 * layer + (kind == MLP), suffix)

    def param_key(self, block: int, suffix: str) -> str:
        return f"model.layers.{block // 2}.{suffix}"
