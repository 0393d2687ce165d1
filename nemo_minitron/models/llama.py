"""Llama (``LlamaForCausalLM``): the plain decoder of :mod:`.decoder`; SmolLM2 and Llama 3.x are Llamas.

``attention_bias`` gives q/k/v/o biases together and ``mlp_bias`` gate/up/down biases; the LM head
may be tied to the embeddings (SmolLM2) or not (Llama 3.1 8B).
"""

from __future__ import annotations

from .decoder import ATTENTION_BIAS_NAMES, DECODER_CONFIG_NAMES, DecoderFamily


class Llama(DecoderFamily):
    name = "llama"
    hidden_divisible_by_heads = True
    model_type = "llama"
    config_names = {**DECODER_CONFIG_NAMES, **ATTENTION_BIAS_NAMES, "mlp_bias": "mlp_bias"}

    def config_class(self) -> type:
        from transformers import LlamaConfig

        return LlamaConfig


FAMILY = Llama()
