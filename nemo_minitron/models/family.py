"""The interface every model family implements: one object holds everything a family knows.

A family file (``nemotron_h.py``, ``mamba2.py``, ...) subclasses :class:`ModelFamily` and fills in
how its HF config spells a :class:`~nemo_minitron.arch.HybridArch`, where its modules live, which
axis every dimension of every parameter belongs to (the trim rules), and its run-time quirks.
Pruning, importance and training code only ever ask a family; none of them spells a module or
parameter name. Adding a family is one file plus one line in ``registry.py``.

Trim rules name, per tensor dimension, the axis it is indexed by (``None``: kept whole):
``hidden`` (model width), ``ffn`` (MLP neurons; gate and up rows, down columns), ``q`` (attention
query rows, head-major; key/value heads are kept whole),
``heads`` / ``inner`` / ``conv`` / ``in_proj`` (Mamba heads, head channels and the fused rows of
:mod:`.mamba_layout`), ``experts`` (routed experts of an MoE block: their stacked weights, router rows and
score-correction bias), ``expert_ffn`` (each kept routed expert's own neurons: its index is per expert,
[kept experts, kept neurons], applied after ``experts``) and ``shared_ffn`` (the shared expert's neurons). ``prune.trim`` turns a plan's kept indices into those index tensors.
"""

from __future__ import annotations

import dataclasses
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, reduce
from typing import Any, ClassVar

import torch
from torch import nn

from ..arch import LAYOUT_FLAGS, MAMBA, ArchError, HybridArch

#: Axis of each dimension of one tensor (``None``: keep that dimension whole).
Axes = tuple[str | None, ...]

#: Sub-modules importance estimation reads, by role (the family maps them to its module names).
IN_PROJ = "in_proj"  #: Mamba: its output holds the fused z | x | B | C | dt rows
OUT_PROJ = "out_proj"  #: Mamba: its input is the SSM output (heads x head channels)
FFN_IN = "ffn_in"  #: MLP: its output is one activation per FFN neuron (paper eq. 26)
FFN_ACT = "ffn_act"  #: gated MLP: its input is one activation per FFN neuron, act(gate) * up
HEADS_OUT = "heads_out"  #: attention: its input is the concatenated per-head outputs
ROUTED_EXPERTS = "routed_experts"  #: MoE: the stacked routed experts, called with the router's choices
SHARED_FFN_IN = "shared_ffn_in"  #: MoE: the shared expert's up projection (one output per shared-expert neuron)


@dataclass(frozen=True)
class LayerRef:
    """One residual block of the layer pattern: ``x + mixer(norm(x))``."""

    index: int  #: position in the layer pattern
    kind: str  #: MAMBA, ATTENTION or MLP
    block: nn.Module  #: the module whose output skipping removes the layer (a decoder layer for both its blocks)
    norm: nn.Module  #: its pre-norm: the output is the mixer's input
    mixer: nn.Module


@dataclass(frozen=True)
class RoutedExperts:
    """The weights of an MoE block's routed experts: expert ``e`` maps ``x`` to ``down[e] @ act(up[e] @ x)``."""

    up: torch.Tensor  #: [experts, neurons, hidden]
    down: torch.Tensor  #: [experts, hidden, neurons]
    act: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class RoutedCall:
    """One call of a routed-experts module: the tokens and, per token, the chosen experts and their router weights
    (the weights multiply each expert's output before the outputs are summed)."""

    hidden: torch.Tensor  #: [tokens, hidden], the batch flattened sample-major
    experts: torch.Tensor  #: [tokens, top_k] expert indices
    weights: torch.Tensor  #: [tokens, top_k]


@dataclass(frozen=True)
class TrimRule:
    """How to cut one state-dict tensor: the axes of its dimensions, and where it lives.

    ``block`` is the pattern position whose kept indices apply (``None`` for model-level tensors
    such as embeddings, which are only cut along ``hidden``); ``suffix`` is the key below the block,
    used to rebuild the key when depth pruning renumbers the blocks.
    """

    axes: Axes
    block: int | None = None
    suffix: str = ""


def prefixed(prefix: str, rules: dict[str, Axes]) -> dict[str, Axes]:
    """``rules`` with every key moved under ``prefix`` (e.g. a mixer's rules inside its block)."""
    return {prefix + key: axes for key, axes in rules.items()}


class ModelFamily:
    """Everything one HF model family knows. Subclasses set the class attributes and the
    config methods; the module-path and trimming defaults fit a ``backbone.layers[i].{norm,mixer}``
    layout and may be overridden for other layouts."""

    #: ``HybridArch.family`` of this family.
    name: ClassVar[str]
    #: ``config.model_type`` of its HF checkpoints.
    model_type: ClassVar[str]
    #: Attribute of the ``*ForCausalLM`` holding the backbone, and the backbone's own attributes.
    backbone_attr: ClassVar[str]
    layers_attr: ClassVar[str] = "layers"
    final_norm_attr: ClassVar[str] = "norm_f"
    head_attr: ClassVar[str] = "lm_head"
    #: Attributes of one layer module: its pre-norm and its mixer.
    block_norm_attr: ClassVar[str] = "norm"
    block_mixer_attr: ClassVar[str] = "mixer"
    #: Layer kind -> role -> attribute of the mixer (see the role constants above).
    probes: ClassVar[dict[str, dict[str, str]]]
    #: Layer kind -> key below the layer module -> axes.
    block_rules: ClassVar[dict[str, dict[str, Axes]]]
    #: Full state-dict key -> axes, for tensors outside the layers.
    model_rules: ClassVar[dict[str, Axes]]
    #: HybridArch field -> the HF config field spelling it, for fields copied as they are.
    config_names: ClassVar[dict[str, str]]
    #: Fields of a base config that contradict :meth:`config_fields` and must be dropped.
    stale_config_fields: ClassVar[tuple[str, ...]] = ()
    #: Config fields holding one entry per layer (e.g. ``layer_types``): depth pruning keeps the kept layers' entries.
    per_layer_config_fields: ClassVar[tuple[str, ...]] = ()
    #: Pattern blocks per layer (``HybridArch.layers``): a transformer decoder layer is an attention and an MLP block.
    blocks_per_layer: ClassVar[int] = 1
    #: Layout flags (``arch.LAYOUT_FLAGS``) this family's HF code always sets; flags neither fixed here nor read
    #: through :attr:`config_names` keep HybridArch's default.
    fixed_flags: ClassVar[dict[str, bool]] = {}

    # ------------------------------------------------------------------ HF config <-> shape
    def config_class(self) -> type:
        """The transformers config class (imported lazily)."""
        raise NotImplementedError

    def arch_from_config(self, cfg: Any) -> HybridArch:
        """The shape an HF config of this family describes."""
        raise NotImplementedError

    def config_fields(self, arch: HybridArch) -> dict[str, Any]:
        """The HF config fields ``arch`` determines (other fields are kept from a base config)."""
        raise NotImplementedError

    def read_named_fields(self, cfg: Any) -> dict[str, Any]:
        """The :attr:`config_names` fields of an HF config, as HybridArch fields (flags as bool)."""
        flags = {f.name for f in dataclasses.fields(HybridArch) if isinstance(f.default, bool)}
        return {field: bool(getattr(cfg, name)) if field in flags else getattr(cfg, name)
                for field, name in self.config_names.items()}

    def named_fields(self, arch: HybridArch) -> dict[str, Any]:
        """The :attr:`config_names` fields of ``arch`` in HF spelling. Widths of absent layer kinds
        are 0 in the arch; HF configs want positive values, so they become 1."""
        values = {name: getattr(arch, field) for field, name in self.config_names.items()}
        return {name: v if isinstance(v, bool) else max(v, 1) for name, v in values.items()}

    def check_arch(self, arch: HybridArch) -> None:
        """Raise :class:`ArchError` for a shape this family's HF model cannot have."""

    def check_layout_flags(self, arch: HybridArch) -> None:
        """Raise :class:`ArchError` for optional tensors (biases, norms, gates) this family cannot express, so
        ``num_params`` never counts a layout the HF model does not have."""
        defaults = {f.name: f.default for f in dataclasses.fields(HybridArch) if f.name in LAYOUT_FLAGS}
        for flag in LAYOUT_FLAGS:
            expected = self.fixed_flags.get(flag, defaults[flag])
            if flag not in self.config_names and getattr(arch, flag) != expected:
                raise ArchError(f"{flag}={getattr(arch, flag)}: {self.name} models always have {flag}={expected}")
        shared: dict[str, set[bool]] = defaultdict(set)
        for field, name in self.config_names.items():
            if field in LAYOUT_FLAGS:
                shared[name].add(getattr(arch, field))
        for name, values in shared.items():
            if len(values) > 1:
                fields = [f for f, n in self.config_names.items() if n == name]
                raise ArchError(f"{' and '.join(fields)} are one setting ({name}) in {self.name} models: set them equal")

    def hf_config(self, arch: HybridArch, base: Any | None = None, kept_layers: Sequence[int] | None = None) -> Any:
        """A transformers config for ``arch``. Fields it does not determine (norm eps, token ids,
        rope/dt settings, ...) are copied from ``base`` when given, so a pruned model keeps them.

        ``kept_layers`` (indices of ``base``'s layers, when ``arch`` was cut from it by depth pruning) picks
        the surviving entries of per-layer fields such as ``layer_types``; without it, per-layer fields of
        another length are dropped so the config class derives them again.
        """
        arch.validate()
        config_cls = self.config_class()
        fields = {**self.config_fields(arch), **self.plain_runtime_fields(arch)}
        if base is None:
            return config_cls(**fields)
        if getattr(base, "model_type", None) != self.model_type:
            raise ArchError(f"base config is {base.model_type!r} but this arch is family={arch.family!r}")
        merged = base.to_dict()
        for stale in self.stale_config_fields:
            merged.pop(stale, None)
        for name in self.per_layer_config_fields:
            values = merged.get(name)
            if isinstance(values, list) and kept_layers is not None:
                merged[name] = [values[i] for i in kept_layers]
            elif isinstance(values, list) and len(values) != arch.num_layers:
                merged.pop(name)
        merged.update(fields)
        return config_cls(**merged)

    # ------------------------------------------------------------------ hub configs
    def hub_config_fixes(self, raw: dict[str, Any]) -> dict[str, Any]:
        """Config overrides for fields a hub ``config.json`` spells in a way transformers ignores
        (raw config -> ``{field: value}``); raise :class:`ArchError` for contradicting spellings."""
        return {}

    def hub_spelling(self, saved: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
        """A saved ``config.json`` rewritten so the source's remote code (``auto_map``) can read it too,
        using the ``source`` config's spellings where they differ from transformers'."""
        return saved

    # ------------------------------------------------------------------ module paths
    def backbone(self, model: nn.Module) -> nn.Module:
        return getattr(model, self.backbone_attr)

    def final_norm(self, model: nn.Module) -> nn.Module:
        return getattr(self.backbone(model), self.final_norm_attr)

    def lm_head(self, model: nn.Module) -> nn.Module:
        return getattr(model, self.head_attr)

    def layers(self, model: nn.Module, pattern: str) -> list[LayerRef]:
        """The blocks of ``model`` in pattern order."""
        blocks = list(getattr(self.backbone(model), self.layers_attr))
        if len(blocks) != len(pattern):
            raise ArchError(f"model has {len(blocks)} layers but its config pattern has {len(pattern)}")
        return [LayerRef(i, kind, block, getattr(block, self.block_norm_attr), getattr(block, self.block_mixer_attr))
                for i, (kind, block) in enumerate(zip(pattern, blocks))]

    def has_probe(self, layer: LayerRef, role: str) -> bool:
        return role in self.probes.get(layer.kind, {})

    def probe(self, layer: LayerRef, role: str) -> nn.Module:
        """The sub-module of ``layer`` playing ``role`` (a TypeError when its kind has no such role)."""
        attr = self.probes.get(layer.kind, {}).get(role)
        if attr is None:
            raise TypeError(f"layer {layer.index} is {layer.kind!r}, which has no {role!r} module")
        return reduce(getattr, attr.split("."), layer.mixer)

    def routed_experts(self, module: nn.Module) -> RoutedExperts:
        """The weights of a :data:`ROUTED_EXPERTS` module (families with MoE blocks implement it)."""
        raise NotImplementedError(f"the {self.name} family has no MoE blocks")

    def routed_call(self, args: tuple, kwargs: dict) -> RoutedCall:
        """The arguments of one call of a :data:`ROUTED_EXPERTS` module, as a forward pre-hook sees them."""
        raise NotImplementedError(f"the {self.name} family has no MoE blocks")

    def ssm_mixers(self, model: nn.Module, pattern: str) -> list[nn.Module]:
        """The Mamba mixers (they hold the run-time scan ``chunk_size``)."""
        return [layer.mixer for layer in self.layers(model, pattern) if layer.kind == MAMBA]

    # ------------------------------------------------------------------ trimming
    @cached_property
    def _layer_key(self) -> re.Pattern[str]:
        return re.compile(rf"^{re.escape(self.backbone_attr)}\.{re.escape(self.layers_attr)}\.(\d+)\.(.+)$")

    def trim_rule(self, key: str, pattern: str) -> TrimRule | None:
        """How to cut state-dict entry ``key`` of a model with layer ``pattern``; None if unknown."""
        match = self._layer_key.match(key)
        if match is None:
            axes = self.model_rules.get(key)
            return None if axes is None else TrimRule(axes)
        return self.layer_rule(int(match.group(1)), match.group(2), pattern)

    def layer_rule(self, layer: int, suffix: str, pattern: str) -> TrimRule | None:
        """The rule of key ``suffix`` below layer module ``layer`` (here one module per pattern block)."""
        if layer >= len(pattern):
            return None
        axes = self.block_rules.get(pattern[layer], {}).get(suffix)
        return None if axes is None else TrimRule(axes, layer, suffix)

    def param_key(self, block: int, suffix: str) -> str:
        """The state-dict key of ``suffix`` in the block at pattern position ``block``."""
        return f"{self.backbone_attr}.{self.layers_attr}.{block}.{suffix}"

    def adjust_pruned_state(self, state: dict[str, torch.Tensor], source: HybridArch, target: HybridArch) -> None:
        """Fix up a trimmed state dict in place where the family's forward depends on a pruned width itself
        (e.g. an embedding scale of sqrt(hidden_size)). Most families compute nothing from widths."""

    # ------------------------------------------------------------------ run-time quirks
    def plain_runtime_fields(self, arch: HybridArch) -> dict[str, Any]:
        """Config fields a model of this shape needs so that a plain transformers ``model(ids)``
        and ``generate`` work (written into every saved config)."""
        return {}

    def needs_counting_cache(self, arch: HybridArch) -> bool:
        """Whether ``generate`` needs the token-counting cache of :mod:`.generation`."""
        return False
