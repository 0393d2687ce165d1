"""Qwen3 (``Qwen3ForCausalLM``): the plain decoder of :mod:`.decoder` with RMSNorms of q and k per head
(one head_dim-sized weight each, shared by all heads, so head pruning keeps them whole) and optional
q/k/v/o biases (``attention_bias``).
"""

from __future__ import annotations

from .decoder import ATTENTION_BIAS_NAMES, DECODER_CONFIG_NAMES, DecoderFamily


class Qwen3(DecoderFamily):
    name = "qwen3"
    model_type = "qwen3"
    config_names = {**DECODER_CONFIG_NAMES, **ATTENTION_BIAS_NAMES}
    fixed_flags = {**DecoderFamily.fixed_flags, "qk_norm": True}

    def config_class(self) -> type:
        from transformers import Qwen3Config

        return Qwen3Config


FAMILY = Qwen3()
