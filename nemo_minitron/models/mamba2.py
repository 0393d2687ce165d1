"""Mamba2 (``Mamba2ForCausalLM``): Mamba2 blocks only, under ``backbone.layers``."""

from __future__ import annotations

from .base import ModelAdapter, register


@register
class Mamba2Adapter(ModelAdapter):
    family = "mamba2"
    model_type = "mamba2"
    backbone_attr = "backbone"

