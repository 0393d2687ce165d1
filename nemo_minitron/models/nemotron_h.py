"""NemotronH (``NemotronHForCausalLM``): Mamba2, attention and MLP blocks under ``model.layers``."""

from __future__ import annotations

from .base import ModelAdapter, register


@register
class NemotronHAdapter(ModelAdapter):
    family = "nemotron_h"
    model_type = "nemotron_h"
    backbone_attr = "model"

