"""Qwen2 (``Qwen2ForCausalLM``): the plain decoder of :mod:`.decoder` with q/k/v biases always (no o_proj
bias). Its config has no ``head_dim`` (derived as hidden / heads), so a pruned config writes it explicitly.
"""

from __future__ import annotations

from .decoder import DecoderFamily


class Qwen2(DecoderFamily):
    name = "qwen2"
    model_type = "qwen2"
    fixed_flags = {**DecoderFamily.fixed_flags, "qkv_bias": True}

    def config_class(self) -> type:
        from transformers import Qwen2Config

        return Qwen2Config


FAMILY = Qwen2()
