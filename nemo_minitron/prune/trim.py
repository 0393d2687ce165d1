"""Apply a PruningPlan to an HF model: cut every weight along its kept indices, rebuild the model.

The model's family maps every state-dict entry to the axes its dimensions live on (its trim
rules, in ``models/<family>.py``); this module only turns the plan's kept indices into index
tensors per axis and cuts. An entry without a rule is an error, so a new family or a new weight
can never be copied through unpruned by accident. The result is an ordinary HF model built from
the target config, so ``save_pretrained`` / ``from_pretrained`` need nothing special.
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch import ATTENTION, MAMBA, MOE
from ..models import adapter_for
from ..models.io import reshaped_model
from ..models.attention_layout import attention_axes
from ..models.family import Axes
from ..models.mamba_layout import MambaShape, mamba_axes
from .plan import PlanError, PruningPlan


def _block_axes(plan: PruningPlan, block: int) -> dict[str, torch.Tensor]:
    """Index tensors of every axis of one source block (besides ``hidden``)."""
    src = plan.source
    kind = src.pattern[block]
    if kind == MAMBA:
        return mamba_axes(MambaShape.of(src), plan.mamba_heads[block], plan.mamba_channels[block])
    if kind == ATTENTION:
        return attention_axes(src.attention_head_dim, plan.attention_heads[block])
    if kind == MOE:
        return {"experts": torch.as_tensor(plan.moe_experts[block], dtype=torch.long),
                "expert_ffn": torch.as_tensor(plan.moe_ffn[block], dtype=torch.long),
                "shared_ffn": torch.as_tensor(plan.moe_shared[block], dtype=torch.long)}
    return {"ffn": torch.as_tensor(plan.ffn[block], dtype=torch.long)}


def _take(tensor: torch.Tensor, axes: Axes, index: dict[str, torch.Tensor]) -> torch.Tensor:
    """Cut ``tensor`` along every axis; a 2-D index ([rows of dim 0, kept]) keeps different entries per row of
    dim 0 (each routed expert its own neurons), so dim 0 must have been cut already."""
    for dim, axis in enumerate(axes):
        if axis is None:
            continue
        kept = index[axis].to(tensor.device)
        if kept.ndim == 1:
            tensor = tensor.index_select(dim, kept)
        else:
            shape = [kept.shape[0]] + [1] * (tensor.ndim - 1)
            shape[dim] = kept.shape[1]
            size = list(tensor.shape)
            size[dim] = kept.shape[1]
            tensor = tensor.gather(dim, kept.view(shape).expand(size))
    return tensor


def pruned_state_dict(model: nn.Module, plan: PruningPlan) -> dict[str, torch.Tensor]:
    """The source model's state dict cut down to the plan (keys renumbered for dropped layers)."""
    family = adapter_for(model).family
    pattern = plan.source.pattern
    hidden = {"hidden": torch.as_tensor(plan.hidden, dtype=torch.long)}
    new_index = {old: new for new, old in enumerate(plan.kept_layers)}
    axes_cache: dict[int, dict[str, torch.Tensor]] = {}
    out: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        rule = family.trim_rule(key, pattern)
        if rule is None:
            raise PlanError(f"do not know how to prune parameter {key!r}: the {family.name} family has no trim "
                            "rule for it")
        if rule.block is None:
            out[key] = _take(tensor, rule.axes, hidden)
            continue
        if rule.block not in new_index:
            continue
        if rule.block not in axes_cache:
            axes_cache[rule.block] = {**hidden, **_block_axes(plan, rule.block)}
        out[family.param_key(new_index[rule.block], rule.suffix)] = _take(tensor, rule.axes, axes_cache[rule.block])
    family.adjust_pruned_state(out, plan.source, plan.target)
    return out


def apply_plan(model: nn.Module, plan: PruningPlan, validate: bool = True) -> nn.Module:
    """A new HF model of ``plan.target``'s shape holding the kept weights of ``model``.

    ``validate=False`` skips the group checks; it exists only so tests can show that a plan
    violating them really does change the model.
    """
    if validate:
        plan.validate()
    adapter = adapter_for(model)
    if adapter.arch != plan.source:
        raise PlanError(f"plan was made for {plan.source.describe()} but the model is {adapter.arch.describe()}")
    state = pruned_state_dict(model, plan)
    config = adapter.config_for(plan.target, kept_layers=plan.kept_source_layers)
    return reshaped_model(model, config, state)
