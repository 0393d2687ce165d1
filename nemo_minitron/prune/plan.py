"""PruningPlan: which indices of every prunable axis survive, checked before any weight is touched.

A plan is plain data (JSON), so it can be reviewed, saved next to the pruned checkpoint,
edited by hand, and re-applied. Indices are positions in the *source* model. Their order is
the order of the pruned model: heads may be reordered within their Mamba group (or KV group)
but never across groups, which is what keeps the SSM computation intact (paper eq. 17). Routed
experts likewise stay in their router group, and shared-expert neurons in their shared expert.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..arch import ATTENTION, MAMBA, MLP, MOE, HybridArch
from ..atomic import write_text_atomic


class PlanError(ValueError):
    """A plan that cannot be applied to the model; the message names the axis and layer."""


@dataclass
class PruningPlan:
    source: HybridArch
    target: HybridArch
    #: kept pattern positions (blocks); whole layers only (a decoder layer's two blocks go together)
    kept_layers: list[int]
    hidden: list[int]
    #: source layer index -> kept indices, for the layers of that kind that survive
    mamba_heads: dict[int, list[int]] = field(default_factory=dict)
    mamba_channels: dict[int, list[int]] = field(default_factory=dict)
    ffn: dict[int, list[int]] = field(default_factory=dict)
    attention_heads: dict[int, list[int]] = field(default_factory=dict)
    #: MoE layers: kept routed experts; per kept expert (same order) its kept neurons; kept shared-expert neurons
    moe_experts: dict[int, list[int]] = field(default_factory=dict)
    moe_ffn: dict[int, list[list[int]]] = field(default_factory=dict)
    moe_shared: dict[int, list[int]] = field(default_factory=dict)

    # ------------------------------------------------------------------ construction
    @classmethod
    def keep_all(cls, arch: HybridArch) -> PruningPlan:
        """The identity plan: applying it must not change the model's outputs at all."""
        full = range
        layers = list(full(len(arch.pattern)))
        return cls(
            source=arch, target=arch, kept_layers=layers, hidden=list(full(arch.hidden_size)),
            mamba_heads={i: list(full(arch.mamba_num_heads)) for i in layers if arch.pattern[i] == MAMBA},
            mamba_channels={i: list(full(arch.mamba_head_dim)) for i in layers if arch.pattern[i] == MAMBA},
            ffn={i: list(full(arch.ffn_hidden_size)) for i in layers if arch.pattern[i] == MLP},
            attention_heads={i: list(full(arch.num_attention_heads)) for i in layers if arch.pattern[i] == ATTENTION},
            moe_experts={i: list(full(arch.num_moe_experts)) for i in layers if arch.pattern[i] == MOE},
            moe_ffn={i: [list(full(arch.moe_ffn_hidden_size))] * arch.num_moe_experts
                     for i in layers if arch.pattern[i] == MOE},
            moe_shared={i: list(full(arch.moe_shared_expert_intermediate_size)) for i in layers if arch.pattern[i] == MOE},
        )

    # ------------------------------------------------------------------ checks
    def validate(self) -> PruningPlan:
        """Raise :class:`PlanError` unless the plan describes exactly ``target`` cut from ``source``."""
        src, tgt = self.source.validate(), self.target.validate()
        if src.family != tgt.family or src.vocab_size != tgt.vocab_size:
            raise PlanError("target must keep the source's family and vocab_size")
        _check_indices("kept_layers", self.kept_layers, len(src.pattern), len(tgt.pattern), ascending=True)
        kept = set(self.kept_layers)
        split = [unit for unit in src.layers if 0 < len(kept.intersection(unit)) < len(unit)]
        if split:
            raise PlanError(f"kept_layers must keep or drop each layer whole; blocks {split} are split")
        pattern = "".join(src.pattern[i] for i in self.kept_layers)
        if pattern != tgt.pattern:
            raise PlanError(f"kept_layers give pattern {pattern!r} but target.pattern is {tgt.pattern!r}")
        _check_indices("hidden", self.hidden, src.hidden_size, tgt.hidden_size)
        for kind, axes in _LAYER_AXES.items():
            expected = [i for i in self.kept_layers if src.pattern[i] == kind]
            for axis in axes:
                table: dict[int, list[int]] = getattr(self, axis)
                if sorted(table) != expected:
                    raise PlanError(f"{axis} must list exactly the kept {kind!r} layers {expected}, got {sorted(table)}")
        for i in self.mamba_heads:
            _check_indices(f"mamba_heads[{i}]", self.mamba_heads[i], src.mamba_num_heads, tgt.mamba_num_heads)
            _check_grouped(f"mamba_heads[{i}]", self.mamba_heads[i], src.mamba_num_heads, src.mamba_num_groups,
                           "Mamba group")
            _check_indices(f"mamba_channels[{i}]", self.mamba_channels[i], src.mamba_head_dim, tgt.mamba_head_dim)
        for i, kept in self.ffn.items():
            _check_indices(f"ffn[{i}]", kept, src.ffn_hidden_size, tgt.ffn_hidden_size)
        for i, kept in self.attention_heads.items():
            _check_indices(f"attention_heads[{i}]", kept, src.num_attention_heads, tgt.num_attention_heads)
            _check_grouped(f"attention_heads[{i}]", kept, src.num_attention_heads, src.num_query_groups, "KV group")
        for i, experts in self.moe_experts.items():
            _check_indices(f"moe_experts[{i}]", experts, src.num_moe_experts, tgt.num_moe_experts)
            _check_grouped(f"moe_experts[{i}]", experts, src.num_moe_experts, src.moe_router_num_groups,
                           "router group", "expert")
            if len(self.moe_ffn[i]) != len(experts):
                raise PlanError(f"moe_ffn[{i}] lists {len(self.moe_ffn[i])} experts' neurons but moe_experts[{i}] "
                                f"keeps {len(experts)} experts")
            for e, neurons in zip(experts, self.moe_ffn[i]):
                _check_indices(f"moe_ffn[{i}] (expert {e})", neurons, src.moe_ffn_hidden_size, tgt.moe_ffn_hidden_size)
            _check_indices(f"moe_shared[{i}]", self.moe_shared[i], src.moe_shared_expert_intermediate_size,
                           tgt.moe_shared_expert_intermediate_size)
            _check_grouped(f"moe_shared[{i}]", self.moe_shared[i], src.moe_shared_expert_intermediate_size,
                           src.moe_shared_experts, "shared expert", "neuron")
        if tgt.num_query_groups != src.num_query_groups and ATTENTION in tgt.pattern:
            raise PlanError("KV heads (num_query_groups) are kept whole; target.num_query_groups must equal the source's")
        for name in ("mamba_num_groups", "mamba_state_dim", "mamba_conv_kernel", "attention_head_dim",
                     "tie_word_embeddings", "moe_router_topk", "moe_shared_experts", "moe_router_num_groups",
                     "moe_router_group_topk"):
            if getattr(src, name) != getattr(tgt, name) and _axis_used(tgt, name):
                raise PlanError(f"{name} cannot be pruned: target has {getattr(tgt, name)}, source {getattr(src, name)}")
        return self

    @property
    def kept_source_layers(self) -> list[int]:
        """Indices of the source's layers (``HybridArch.layers``) that survive."""
        kept = set(self.kept_layers)
        return [i for i, unit in enumerate(self.source.layers) if unit[0] in kept]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        def table(t: dict[int, list[int]]) -> dict[str, list[int]]:
            return {str(k): list(map(int, v)) for k, v in sorted(t.items())}

        return {
            "format": "nemo-minitron/pruning-plan/v1",
            "source": self.source.to_dict(),
            "target": self.target.to_dict(),
            "kept_layers": list(map(int, self.kept_layers)),
            "hidden": list(map(int, self.hidden)),
            **{axis: table(getattr(self, axis)) for axis in _ALL_AXES},
            # MoE tables only for models with MoE layers, so other plans read exactly as before they existed
            **({"moe_experts": table(self.moe_experts),
                "moe_ffn": {str(k): [list(map(int, e)) for e in v] for k, v in sorted(self.moe_ffn.items())},
                "moe_shared": table(self.moe_shared)} if MOE in self.source.pattern else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PruningPlan:
        try:
            return cls(
                source=HybridArch(**data["source"]),
                target=HybridArch(**data["target"]),
                kept_layers=list(data["kept_layers"]),
                hidden=list(data["hidden"]),
                **{axis: {int(k): list(v) for k, v in data.get(axis, {}).items()} for axis in _ALL_AXES + _MOE_AXES},
            )
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise PlanError(f"not a pruning plan: {err!r}") from err

    def save(self, path: str | os.PathLike) -> Path:
        return write_text_atomic(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def load(cls, path: str | os.PathLike) -> PruningPlan:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"pruning plan {path} not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise PlanError(f"{path} is not a pruning plan: invalid JSON ({err})") from err
        return cls.from_dict(data).validate()


_MOE_AXES = ("moe_experts", "moe_ffn", "moe_shared")
_LAYER_AXES = {MAMBA: ("mamba_heads", "mamba_channels"), MLP: ("ffn",), ATTENTION: ("attention_heads",), MOE: _MOE_AXES}
_ALL_AXES = ("mamba_heads", "mamba_channels", "ffn", "attention_heads")


def _axis_used(arch: HybridArch, name: str) -> bool:
    if name.startswith("mamba"):
        return MAMBA in arch.pattern
    if name.startswith("attention"):
        return ATTENTION in arch.pattern
    if name.startswith("moe"):
        return MOE in arch.pattern
    return True


def _check_indices(name: str, kept: list[int], size: int, expected_len: int, ascending: bool = False) -> None:
    if len(kept) != expected_len:
        raise PlanError(f"{name} keeps {len(kept)} entries but the target needs {expected_len}")
    if len(set(kept)) != len(kept):
        raise PlanError(f"{name} has repeated indices")
    if any(not 0 <= k < size for k in kept):
        raise PlanError(f"{name} has indices outside [0, {size})")
    if ascending and list(kept) != sorted(kept):
        raise PlanError(f"{name} must be in ascending order")


def _check_grouped(name: str, kept: list[int], size: int, groups: int, what: str, unit: str = "head") -> None:
    """Output position p must hold a ``unit`` (head, expert, shared-expert neuron) of the same group as in the
    source (eq. 17)."""
    per_group_src, per_group_tgt = size // groups, len(kept) // groups
    if len(kept) % groups:
        raise PlanError(f"{name} keeps {len(kept)} {unit}s, not a multiple of the {groups} {what}s")
    for pos, head in enumerate(kept):
        if head // per_group_src != pos // per_group_tgt:
            raise PlanError(
                f"{name}: {unit} {head} (of {what} {head // per_group_src}) cannot move to {what} "
                f"{pos // per_group_tgt}; {unit}s may only be reordered within their {what}"
            )
