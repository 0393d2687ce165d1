"""Gemma3 text models (``Gemma3ForCausalLM``, config ``Gemma3TextConfig``, model_type ``gemma3_text``; what a
Gemma 3 GGUF loads as): the plain decoder of :mod:`.decoder` with

- sandwich norms: ``input_layernorm`` / ``post_attention_layernorm`` around attention and
  ``pre_feedforward_layernorm`` / ``post_feedforward_layernorm`` around the MLP (all cut along hidden);
- RMSNorms of q and k (one head_dim-sized weight each, kept whole) and optional biases (``attention_bias``);
- sliding-window and full attention layers (``layer_types``: depth pruning keeps the kept layers' types);
- embeddings scaled by sqrt(hidden_size) in the forward pass, so pruning the hidden size would rescale
  every embedding: :meth:`Gemma3.adjust_pruned_state` folds the change back into the weights;
- RMSNorm weights stored as offsets: the norm multiplies by (1 + weight).
"""

from __future__ import annotations

import torch

from ..arch import ATTENTION, MLP, HybridArch
from .decoder import ATTENTION_BIAS_NAMES, DECODER_CONFIG_NAMES, DecoderFamily


class Gemma3(DecoderFamily):
    name = "gemma3"
    hidden_divisible_by_heads = True
    model_type = "gemma3_text"
    config_names = {**DECODER_CONFIG_NAMES, **ATTENTION_BIAS_NAMES}
    fixed_flags = {**DecoderFamily.fixed_flags, "qk_norm": True, "post_norms": True}
    pre_norms = {ATTENTION: "input_layernorm", MLP: "pre_feedforward_layernorm"}
    post_norms = {ATTENTION: "post_attention_layernorm", MLP: "post_feedforward_layernorm"}

    def config_class(self) -> type:
        from transformers import Gemma3TextConfig

        return Gemma3TextConfig

    def adjust_pruned_state(self, state: dict[str, torch.Tensor], source: HybridArch, target: HybridArch) -> None:
        """Keep every kept embedding channel's value: the forward multiplies embeddings by sqrt(hidden_size),
        so scale the weights by sqrt(source / target). A tied LM head shares those weights; its logits are
        brought back by dividing the final norm's (1 + weight), which only the head reads."""
        if target.hidden_size == source.hidden_size:
            return
        factor = (source.hidden_size / target.hidden_size) ** 0.5
        embed = state["model.embed_tokens.weight"]
        state["model.embed_tokens.weight"] = (embed.float() * factor).to(embed.dtype)
        if target.tie_word_embeddings:
            norm = state["model.norm.weight"]
            state["model.norm.weight"] = ((1 + norm.float()) / factor - 1).to(norm.dtype)


FAMILY = Gemma3()
