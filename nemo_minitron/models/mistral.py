"""Mistral (``MistralForCausalLM``, also Mistral-NeMo): the plain decoder of :mod:`.decoder` without any
bias; ``head_dim`` may differ from hidden / heads (Mistral-NeMo 12B: 5120 hidden, 32 heads of 128).
"""

from __future__ import annotations

from .decoder import DecoderFamily


class Mistral(DecoderFamily):
    name = "mistral"
    model_type = "mistral"

    def config_class(self) -> type:
        from transformers import MistralConfig

        return MistralConfig


FAMILY = Mistral()
