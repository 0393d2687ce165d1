"""PruningConfig: what the user asks for, named as in NeMo's ``PruningConfig``, checked up front.

Every target is checked against the source model before any calibration pass runs, so a typo
costs a second, not an hour of forward passes. Errors name the field and its valid values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..arch import ArchError, HybridArch

MAMBA_METRICS = ("x", "z", "out_proj", "flap")
LAYER_METRICS = ("kl", "cosine")


class PruningConfigError(ValueError):
    """A target the model cannot be pruned to; names the ``pruning_config.*`` field."""


@dataclass
class PruningConfig:
    """Targets (None = keep that axis whole) and importance metrics.

    ``drop_layers`` are 1-based layer numbers, as in NeMo; ``target_num_layers`` instead drops the
    layers of lowest importance (``layer_metric``). Mamba scores come from the W_x projection
    output by default (the paper's best, Table 2); ``z``, ``out_proj`` (its input) and ``flap``
    are the ablation alternatives.

    MoE blocks (NeMo / Model Optimizer names): ``target_num_moe_experts`` routed experts kept per MoE layer (the
    router's rows and correction bias follow their experts; at least ``num_experts_per_tok`` must stay, and with
    router groups (``n_group``) a multiple of the groups), ``target_moe_ffn_hidden_size`` neurons kept in every
    routed expert (ranked per expert), ``target_moe_shared_expert_intermediate_size`` neurons of the shared expert
    (a multiple of ``n_shared_experts``, the equal experts whose total it is).
    """

    target_ffn_hidden_size: Optional[int] = None
    target_hidden_size: Optional[int] = None
    target_num_attention_heads: Optional[int] = None
    target_mamba_num_heads: Optional[int] = None
    target_mamba_head_dim: Optional[int] = None
    target_num_moe_experts: Optional[int] = None
    target_moe_ffn_hidden_size: Optional[int] = None
    target_moe_shared_expert_intermediate_size: Optional[int] = None
    target_num_layers: Optional[int] = None
    drop_layers: Optional[list[int]] = field(default=None)
    mamba_metric: str = "x"
    layer_metric: str = "kl"

    @property
    def prunes_depth(self) -> bool:
        return self.target_num_layers is not None or bool(self.drop_layers)

    def check(self, source: HybridArch) -> None:
        """Raise :class:`PruningConfigError` for any target ``source`` cannot reach."""
        _choice("mamba_metric", self.mamba_metric, MAMBA_METRICS)
        _choice("layer_metric", self.layer_metric, LAYER_METRICS)
        _width("target_hidden_size", self.target_hidden_size, source.hidden_size)
        if "-" in source.pattern:
            _width("target_ffn_hidden_size", self.target_ffn_hidden_size, source.ffn_hidden_size)
        else:
            _absent("target_ffn_hidden_size", self.target_ffn_hidden_size, "it has no MLP layers")
        if "*" in source.pattern:
            _width("target_num_attention_heads", self.target_num_attention_heads, source.num_attention_heads,
                   multiple_of=source.num_query_groups, unit="KV groups (num_query_groups)")
        else:
            _absent("target_num_attention_heads", self.target_num_attention_heads, "it has no attention layers")
        if "M" in source.pattern:
            _width("target_mamba_num_heads", self.target_mamba_num_heads, source.mamba_num_heads,
                   multiple_of=source.mamba_num_groups, unit="Mamba groups (n_groups)")
            _width("target_mamba_head_dim", self.target_mamba_head_dim, source.mamba_head_dim)
        else:
            _absent("target_mamba_num_heads", self.target_mamba_num_heads, "it has no Mamba layers")
            _absent("target_mamba_head_dim", self.target_mamba_head_dim, "it has no Mamba layers")
        self._check_moe(source)
        if self.target_num_layers is not None and self.drop_layers:
            raise PruningConfigError(
                "set either pruning_config.target_num_layers or pruning_config.drop_layers, not both")
        _width("target_num_layers", self.target_num_layers, source.num_layers)
        if self.drop_layers:
            n = source.num_layers
            bad = [d for d in self.drop_layers if not isinstance(d, int) or not 1 <= d <= n]
            if bad:
                raise PruningConfigError(
                    f"pruning_config.drop_layers={self.drop_layers} has {bad} out of range: layer numbers are "
                    f"1-based, valid values are 1..{n}")
            repeated = sorted({d for d in self.drop_layers if self.drop_layers.count(d) > 1})
            if repeated:
                raise PruningConfigError(
                    f"pruning_config.drop_layers={self.drop_layers} names layer(s) {repeated} more than once; "
                    "list each layer to drop once")
            if len(set(self.drop_layers)) == n:
                raise PruningConfigError("pruning_config.drop_layers would drop every layer")
        try:
            self.target_widths(source).validate()
        except ArchError as err:
            raise PruningConfigError(f"pruning_config gives an invalid shape: {err}") from err

    def _check_moe(self, source: HybridArch) -> None:
        if "E" not in source.pattern:
            for name in ("target_num_moe_experts", "target_moe_ffn_hidden_size",
                         "target_moe_shared_expert_intermediate_size"):
                _absent(name, getattr(self, name), "it has no MoE layers")
            return
        groups = source.moe_router_num_groups
        _width("target_num_moe_experts", self.target_num_moe_experts, source.num_moe_experts,
               multiple_of=groups, unit="router groups (n_group)", what="experts")
        _width("target_moe_ffn_hidden_size", self.target_moe_ffn_hidden_size, source.moe_ffn_hidden_size)
        _width("target_moe_shared_expert_intermediate_size", self.target_moe_shared_expert_intermediate_size,
               source.moe_shared_expert_intermediate_size, multiple_of=source.moe_shared_experts,
               unit="shared experts (n_shared_experts)", what="neurons")
        kept = self.target_num_moe_experts
        if kept is None:
            return
        reachable = source.moe_router_group_topk * kept // groups
        if source.moe_router_topk > reachable:
            least = groups * -(-source.moe_router_topk // source.moe_router_group_topk)  # a multiple of groups
            if groups == 1:
                why = f"would keep fewer experts than the num_experts_per_tok={source.moe_router_topk} every token uses"
            else:
                why = (f"would leave a token {reachable} experts to choose from ({source.moe_router_group_topk} of "
                       f"{groups} router groups of {kept // groups}), fewer than the num_experts_per_tok="
                       f"{source.moe_router_topk} it uses")
            raise PruningConfigError(f"pruning_config.target_num_moe_experts={kept} {why}; keep at least {least} experts")
        if kept // groups < 2:
            raise PruningConfigError(
                f"pruning_config.target_num_moe_experts={kept} leaves {kept // groups} expert(s) per router group; "
                f"transformers' router scores a group by its best two experts: keep at least {2 * groups}")

    def target_widths(self, source: HybridArch) -> HybridArch:
        """``source`` with the width targets applied (depth is decided by importance later)."""

        def pick(value: Optional[int], current: int) -> int:
            return current if value is None else value

        return HybridArch(**{
            **source.__dict__,
            "hidden_size": pick(self.target_hidden_size, source.hidden_size),
            "ffn_hidden_size": pick(self.target_ffn_hidden_size, source.ffn_hidden_size),
            "num_attention_heads": pick(self.target_num_attention_heads, source.num_attention_heads),
            "mamba_num_heads": pick(self.target_mamba_num_heads, source.mamba_num_heads),
            "mamba_head_dim": pick(self.target_mamba_head_dim, source.mamba_head_dim),
            "num_moe_experts": pick(self.target_num_moe_experts, source.num_moe_experts),
            "moe_ffn_hidden_size": pick(self.target_moe_ffn_hidden_size, source.moe_ffn_hidden_size),
            "moe_shared_expert_intermediate_size": pick(self.target_moe_shared_expert_intermediate_size,
                                                        source.moe_shared_expert_intermediate_size),
        })


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise PruningConfigError(f"pruning_config.{name}={value!r} is not one of {list(valid)}")


def _absent(name: str, value: Optional[int], why: str) -> None:
    if value is not None:
        raise PruningConfigError(f"pruning_config.{name} cannot be set for this model: {why}")


def _width(name: str, value: Optional[int], current: int, multiple_of: int = 1, unit: str = "",
           what: str = "heads") -> None:
    if value is None:
        return
    valid = [v for v in range(multiple_of, current + 1, multiple_of)]
    shown = valid if len(valid) <= 12 else valid[:4] + ["..."] + valid[-3:]
    hint = f"valid values: {', '.join(map(str, shown))}"
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise PruningConfigError(f"pruning_config.{name}={value!r} must be a positive integer; {hint}")
    if value > current:
        raise PruningConfigError(
            f"pruning_config.{name}={value} is larger than the model's current {current}; pruning only shrinks; {hint}")
    if value % multiple_of:
        raise PruningConfigError(
            f"pruning_config.{name}={value} is not divisible by the {multiple_of} {unit}: every group must keep "
            f"the same number of {what}; {hint}")
