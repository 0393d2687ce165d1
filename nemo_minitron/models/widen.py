"""Widen a model's MLPs without changing what it computes: more capacity for a trained model.

The inverse of FFN pruning, on the same per-family axes (``trim_rule``): every MLP gets
``new_ffn - old_ffn`` new neurons whose input rows (up, and gate for a gated MLP) are drawn like a
fresh init and whose output columns (down) and biases are zero. A new neuron's output is multiplied
by a zero column, so the widened model computes exactly the same logits; the zero columns get a
gradient at once (the new neurons' activations are not zero), so training puts them to work. This
is how a teacher that has stopped improving at its size keeps its training and grows (issue #17).
"""

from __future__ import annotations

import torch
from torch import nn

from ..arch import ArchError
from .adapter import adapter_for
from .io import reshaped_model

FFN_AXIS = "ffn"


def _grow(tensor: torch.Tensor, dim: int, extra: int, std: float, generator: torch.Generator) -> torch.Tensor:
    """``tensor`` with ``extra`` new entries along ``dim``: random rows when they feed a new neuron
    (dim 0 of a weight matrix), zeros when they read one (or are a bias)."""
    shape = list(tensor.shape)
    shape[dim] = extra
    if tensor.ndim == 2 and dim == 0:
        new = torch.randn(shape, generator=generator, dtype=torch.float32) * std
    else:
        new = torch.zeros(shape)
    return torch.cat([tensor, new.to(tensor.dtype)], dim=dim)


def widen_ffn(model: nn.Module, ffn_hidden_size: int, seed: int = 0) -> nn.Module:
    """A new model of ``model``'s family and shape but with MLPs of ``ffn_hidden_size`` neurons, whose
    logits equal ``model``'s exactly (see the module docstring); ``model`` is left as it was."""
    adapter = adapter_for(model)
    arch = adapter.arch
    extra = ffn_hidden_size - (arch.ffn_hidden_size or 0)
    if not arch.ffn_hidden_size or extra < 0:
        raise ArchError(f"ffn_hidden_size={ffn_hidden_size}: widening needs MLP layers of at most that many neurons "
                        f"(the model is {arch.describe()})")
    family = adapter.family
    std = float(getattr(model.config, "initializer_range", 0.02))
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for key, tensor in model.state_dict().items():
        rule = family.trim_rule(key, arch.pattern)
        if rule is None:
            raise ArchError(f"do not know the axes of parameter {key!r}: the {family.name} family has no rule for it")
        grown = tensor.detach().clone()
        for dim, axis in enumerate(rule.axes):
            if axis == FFN_AXIS and extra:
                grown = _grow(grown, dim, extra, std, generator)
        state[key] = grown
    return reshaped_model(model, adapter.config_for(arch.replace(ffn_hidden_size=ffn_hidden_size)), state)
