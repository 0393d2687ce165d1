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
    """

    target_ffn_hidden_size: Optional[int] = None
    target_hidden_size: Optional[int] = None
    target_num_attention_heads: Optional[int] = None
    target_mamba_num_heads: Optional[int] = None
    target_mamba_head_dim: Optional[int] = None
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
        })


def _choice(name: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise PruningConfigError(f"pruning_config.{name}={value!r} is not one of {list(valid)}")


def _absent(name: str, value: Optional[int], why: str) -> None:
    if value is not None:
        raise PruningConfigError(f"pruning_config.{name} cannot be set for this model: {why}")


def _width(name: str, value: Optional[int], current: int, multiple_of: int = 1, unit: str = "") -> None:
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
            f"the same number of heads; {hint}")
