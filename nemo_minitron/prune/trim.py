"""Apply a PruningPlan to an HF model: cut every weight along its kept indices, rebuild the model.

Every parameter name of a supported family is mapped to the axes its rows and columns live on
(``_RULES``). An unknown parameter is an error, so a new family or a new weight can never be
copied through unpruned by accident. The result is an ordinary HF model built from the target
config, so ``save_pretrained`` / ``from_pretrained`` need nothing special.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ..arch import ATTENTION, MAMBA, MLP
from ..models import adapter_for
from ..models.mamba_layout import MambaShape
from .plan import PlanError, PruningPlan

# Parameter suffix -> axis of each dimension (None: keep whole). Axes are resolved per layer.
_LAYER_RULES: dict[str, dict[str, tuple[str | None, ...]]] = {
    MAMBA: {
        "norm.weight": ("hidden",),
        "mixer.in_proj.weight": ("in_proj", "hidden"),
        "mixer.in_proj.bias": ("in_proj",),
        "mixer.conv1d.weight": ("conv",),
        "mixer.conv1d.bias": ("conv",),
        "mixer.A_log": ("heads",),
        "mixer.D": ("heads",),
        "mixer.dt_bias": ("heads",),
        "mixer.norm.weight": ("inner",),
        "mixer.out_proj.weight": ("hidden", "inner"),
        "mixer.out_proj.bias": ("hidden",),
    },
    ATTENTION: {
        "norm.weight": ("hidden",),
        "mixer.q_proj.weight": ("q", "hidden"),
        "mixer.k_proj.weight": (None, "hidden"),
        "mixer.v_proj.weight": (None, "hidden"),
        "mixer.o_proj.weight": ("hidden", "q"),
    },
    MLP: {
        "norm.weight": ("hidden",),
        "mixer.up_proj.weight": ("ffn", "hidden"),
        "mixer.up_proj.bias": ("ffn",),
        "mixer.down_proj.weight": ("hidden", "ffn"),
        "mixer.down_proj.bias": ("hidden",),
    },
}
_GLOBAL_RULES: dict[str, tuple[str | None, ...]] = {
    "embeddings.weight": (None, "hidden"),
    "norm_f.weight": ("hidden",),
    "lm_head.weight": (None, "hidden"),
}


def mamba_axes(shape: MambaShape, heads: list[int], channels: list[int]) -> dict[str, torch.Tensor]:
    """Row indices into in_proj / conv1d / inner-width tensors for the kept heads and head channels.

    B and C rows are never cut: they are shared by all heads of a group.
    """
    h = torch.as_tensor(heads, dtype=torch.long)
    inner = shape.channel_index(h, torch.as_tensor(channels, dtype=torch.long))
    i, gs = shape.inner, shape.group_state
    bc = torch.arange(2 * gs)
    return {
        "heads": h,
        "inner": inner,
        "conv": torch.cat([inner, i + bc]),
        "in_proj": torch.cat([inner, i + inner, 2 * i + bc, 2 * i + 2 * gs + h]),
    }


def attention_axes(head_dim: int, heads: list[int]) -> dict[str, torch.Tensor]:
    h = torch.as_tensor(heads, dtype=torch.long)
    return {"q": (h[:, None] * head_dim + torch.arange(head_dim)[None, :]).reshape(-1)}


def _layer_axes(plan: PruningPlan, layer: int, shape: MambaShape) -> dict[str, torch.Tensor]:
    kind = plan.source.pattern[layer]
    if kind == MAMBA:
        return mamba_axes(shape, plan.mamba_heads[layer], plan.mamba_channels[layer])
    if kind == ATTENTION:
        return attention_axes(plan.source.attention_head_dim, plan.attention_heads[layer])
    return {"ffn": torch.as_tensor(plan.ffn[layer], dtype=torch.long)}


def _take(tensor: torch.Tensor, axes: tuple[str | None, ...], index: dict[str, torch.Tensor]) -> torch.Tensor:
    for dim, axis in enumerate(axes):
        if axis is not None:
            tensor = tensor.index_select(dim, index[axis].to(tensor.device))
    return tensor


def pruned_state_dict(model: nn.Module, plan: PruningPlan) -> dict[str, torch.Tensor]:
    """The source model's state dict cut down to the plan (keys renumbered for dropped layers)."""
    adapter = adapter_for(model)
    src = plan.source
    shape = MambaShape(src.mamba_num_heads, src.mamba_head_dim, src.mamba_num_groups, src.mamba_state_dim)
    hidden = torch.as_tensor(plan.hidden, dtype=torch.long)
    new_index = {old: new for new, old in enumerate(plan.kept_layers)}
    layer_key = re.compile(rf"^{re.escape(adapter.backbone_attr)}\.layers\.(\d+)\.(.+)$")
    axes_cache: dict[int, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        match = layer_key.match(key)
        if match is None:
            suffix = key.split(".", 1)[1] if key.startswith(adapter.backbone_attr + ".") else key
            rules = _GLOBAL_RULES.get(suffix)
            if rules is None:
                raise PlanError(f"do not know how to prune parameter {key!r}")
            out[key] = _take(tensor, rules, {"hidden": hidden})
            continue
        layer, suffix = int(match.group(1)), match.group(2)
        if layer not in new_index:
            continue
        rules = _LAYER_RULES[src.pattern[layer]].get(suffix)
        if rules is None:
            raise PlanError(f"do not know how to prune parameter {key!r} of a {src.pattern[layer]!r} layer")
        if layer not in axes_cache:
            axes_cache[layer] = {"hidden": hidden, **_layer_axes(plan, layer, shape)}
        out[f"{adapter.backbone_attr}.layers.{new_index[layer]}.{suffix}"] = _take(tensor, rules, axes_cache[layer])
    return out


def apply_plan(model: nn.Module, plan: PruningPlan, validate: bool = True) -> nn.Module:
    """A new HF model of ``plan.target``'s shape holding the kept weights of ``model``.

    ``validate=False`` skips the group checks; it exists only so tests can show that a plan
    violating them really does change the model.
    """
    from transformers import AutoModelForCausalLM

    if validate:
        plan.validate()
    adapter = adapter_for(model)
    if adapter.arch != plan.source:
        raise PlanError(f"plan was made for {plan.source.describe()} but the model is {adapter.arch.describe()}")
    state = pruned_state_dict(model, plan)
    config = adapter.config_for(plan.target)
    param = next(model.parameters())
    config.dtype = param.dtype
    with torch.device("meta"):
        pruned = AutoModelForCausalLM.from_config(config)
    pruned.load_state_dict(state, strict=True, assign=True)
    if plan.target.tie_word_embeddings:
        # load_state_dict(assign=True) installs two separate tensors; share them again.
        pruned.get_output_embeddings().weight = pruned.get_input_embeddings().weight
    pruned.generation_config = model.generation_config
    pruned.train(model.training)
    return pruned
