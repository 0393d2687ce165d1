"""HybridArch: the shape of a hybrid Mamba/Attention/MLP language model, and its exact size.

Pruning, search and recipes all reason about shapes before touching weights; this module
is the one place that knows how a shape maps to a Hugging Face config and to a parameter
count. ``num_params()`` is exact (tested against the instantiated HF model), so a search
under a parameter budget never needs to build a model to know its size.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

Family = Literal["nemotron_h", "mamba2"]

#: Layer symbols in Nemotron-H's ``hybrid_override_pattern`` notation.
MAMBA, ATTENTION, MLP = "M", "*", "-"
LAYER_SYMBOLS = (MAMBA, ATTENTION, MLP)
SUPPORTED_FAMILIES: tuple[str, ...] = ("nemotron_h", "mamba2")


class ArchError(ValueError):
    """An impossible or unsupported model shape; the message names the field and the fix."""


@dataclass(frozen=True)
class HybridArch:
    """Widths and layer pattern of a hybrid model.

    ``pattern`` uses one symbol per layer: ``M`` Mamba2 mixer, ``*`` self-attention,
    ``-`` MLP. Mamba2-only models (family ``mamba2``) have a pattern of ``M`` only.
    """

    pattern: str
    hidden_size: int
    vocab_size: int
    ffn_hidden_size: int = 0
    num_attention_heads: int = 0
    num_query_groups: int = 0  # KV heads (GQA)
    attention_head_dim: int = 0
    mamba_num_heads: int = 0
    mamba_head_dim: int = 0
    mamba_num_groups: int = 1
    mamba_state_dim: int = 128
    mamba_conv_kernel: int = 4
    tie_word_embeddings: bool = False
    family: Family = "nemotron_h"
    # Bias flags: present in real checkpoints, they change the parameter count.
    mamba_proj_bias: bool = False
    mamba_conv_bias: bool = True
    mlp_bias: bool = False

    def __post_init__(self) -> None:
        # Canonical form: widths of layer kinds the pattern lacks are 0, so two archs that
        # describe the same model compare equal however their HF configs filled those fields.
        unused: dict[str, Any] = {}
        if ATTENTION not in self.pattern:
            unused.update(num_attention_heads=0, num_query_groups=0, attention_head_dim=0)
        if MLP not in self.pattern:
            unused.update(ffn_hidden_size=0, mlp_bias=False)
        if MAMBA not in self.pattern:
            unused.update(mamba_num_heads=0, mamba_head_dim=0, mamba_num_groups=1, mamba_state_dim=128,
                          mamba_conv_kernel=4, mamba_proj_bias=False, mamba_conv_bias=True)
        for name, value in unused.items():
            object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- derived shapes
    @property
    def num_layers(self) -> int:
        return len(self.pattern)

    @property
    def mamba_inner_size(self) -> int:
        """I = heads * head_dim: width of z, x and of the out_proj input."""
        return self.mamba_num_heads * self.mamba_head_dim

    @property
    def mamba_conv_dim(self) -> int:
        """Channels of the depthwise conv1d over x|B|C."""
        return self.mamba_inner_size + 2 * self.mamba_num_groups * self.mamba_state_dim

    @property
    def mamba_in_proj_size(self) -> int:
        """Rows of in_proj: z | x | B | C | dt."""
        return self.mamba_inner_size + self.mamba_conv_dim + self.mamba_num_heads

    @property
    def mamba_heads_per_group(self) -> int:
        return self.mamba_num_heads // self.mamba_num_groups

    def count(self, symbol: str) -> int:
        return self.pattern.count(symbol)

    # ----------------------------------------------------------------- validation
    def validate(self) -> HybridArch:
        """Raise :class:`ArchError` naming the offending field; return self when valid."""
        if self.family not in SUPPORTED_FAMILIES:
            raise ArchError(f"family={self.family!r} is not supported; use one of {SUPPORTED_FAMILIES}")
        if not self.pattern:
            raise ArchError("pattern is empty: a model needs at least one layer (e.g. 'M-M*-')")
        bad = sorted(set(self.pattern) - set(LAYER_SYMBOLS))
        if bad:
            raise ArchError(
                f"pattern {self.pattern!r} has unknown layer symbols {bad}; valid symbols are "
                "'M' (Mamba), '*' (attention), '-' (MLP). MoE layers ('E') are not supported."
            )
        if self.family == "nemotron_h" and self.tie_word_embeddings:
            raise ArchError(
                "tie_word_embeddings=True: NemotronHForCausalLM (transformers) never ties lm_head to the "
                "embeddings, so the model would have both; use tie_word_embeddings=False"
            )
        if self.family == "mamba2" and set(self.pattern) != {MAMBA}:
            raise ArchError(f"family='mamba2' models only have Mamba layers; got pattern {self.pattern!r}")
        _positive(self, "hidden_size", "vocab_size")
        if MAMBA in self.pattern:
            _positive(self, "mamba_num_heads", "mamba_head_dim", "mamba_num_groups", "mamba_state_dim",
                      "mamba_conv_kernel")
            if self.mamba_num_heads % self.mamba_num_groups:
                raise ArchError(
                    f"mamba_num_heads={self.mamba_num_heads} is not divisible by mamba_num_groups="
                    f"{self.mamba_num_groups}: every Mamba group must keep the same number of heads; "
                    f"use a multiple of {self.mamba_num_groups}"
                )
            if self.family == "mamba2" and self.mamba_inner_size % self.hidden_size:
                raise ArchError(
                    f"Mamba2ForCausalLM needs mamba_num_heads*mamba_head_dim ({self.mamba_inner_size}) to be an "
                    f"integer multiple (config.expand) of hidden_size ({self.hidden_size}); prune heads and "
                    "hidden size together so the ratio stays an integer"
                )
        if ATTENTION in self.pattern:
            _positive(self, "num_attention_heads", "num_query_groups", "attention_head_dim")
            if self.num_attention_heads % self.num_query_groups:
                raise ArchError(
                    f"num_query_groups={self.num_query_groups} (KV heads) must divide num_attention_heads="
                    f"{self.num_attention_heads}"
                )
        if MLP in self.pattern:
            _positive(self, "ffn_hidden_size")
        return self

    def replace(self, **changes: Any) -> HybridArch:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes).validate()

    # ----------------------------------------------------------------- size
    def layer_params(self, symbol: str) -> int:
        """Parameters of one block of the given kind, including its pre-norm."""
        h = self.hidden_size
        if symbol == MAMBA:
            i, heads = self.mamba_inner_size, self.mamba_num_heads
            n = h * self.mamba_in_proj_size + i * h  # in_proj + out_proj
            n += (self.mamba_in_proj_size + h) if self.mamba_proj_bias else 0
            n += self.mamba_conv_dim * self.mamba_conv_kernel
            n += self.mamba_conv_dim if self.mamba_conv_bias else 0
            n += 3 * heads + i  # A_log, D, dt_bias, gated norm weight
        elif symbol == ATTENTION:
            q = self.num_attention_heads * self.attention_head_dim
            kv = self.num_query_groups * self.attention_head_dim
            n = h * (q + 2 * kv) + q * h
        elif symbol == MLP:
            n = 2 * h * self.ffn_hidden_size
            n += (self.ffn_hidden_size + h) if self.mlp_bias else 0
        else:
            raise ArchError(f"unknown layer symbol {symbol!r}")
        return n + h  # block pre-norm

    def num_params(self) -> int:
        """Exact ``sum(p.numel() for p in model.parameters())`` of the HF model of this shape."""
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embed
        layers = sum(self.layer_params(s) for s in self.pattern)
        return embed + head + layers + self.hidden_size  # + final norm

    # ----------------------------------------------------------------- HF configs
    @classmethod
    def from_hf_config(cls, cfg: Any) -> HybridArch:
        """Read the shape of a ``NemotronHConfig`` or ``Mamba2Config``."""
        model_type = getattr(cfg, "model_type", None)
        if model_type == "nemotron_h":
            pattern = cfg.hybrid_override_pattern
            if "E" in pattern:
                raise ArchError("MoE layers ('E' in hybrid_override_pattern) are not supported yet")
            return cls(
                family="nemotron_h",
                pattern=pattern,
                hidden_size=cfg.hidden_size,
                vocab_size=cfg.vocab_size,
                ffn_hidden_size=cfg.intermediate_size,
                num_attention_heads=cfg.num_attention_heads,
                num_query_groups=cfg.num_key_value_heads,
                attention_head_dim=cfg.head_dim,
                mamba_num_heads=cfg.mamba_num_heads,
                mamba_head_dim=cfg.mamba_head_dim,
                mamba_num_groups=cfg.n_groups,
                mamba_state_dim=cfg.ssm_state_size,
                mamba_conv_kernel=cfg.conv_kernel,
                # NemotronHForCausalLM has no tied-weights keys: lm_head is always its own tensor.
                tie_word_embeddings=False,
                mamba_proj_bias=bool(cfg.use_bias),
                mamba_conv_bias=bool(cfg.use_conv_bias),
                mlp_bias=bool(cfg.mlp_bias),
            )
        if model_type == "mamba2":
            return cls(
                family="mamba2",
                pattern=MAMBA * cfg.num_hidden_layers,
                hidden_size=cfg.hidden_size,
                vocab_size=cfg.vocab_size,
                mamba_num_heads=cfg.num_heads,
                mamba_head_dim=cfg.head_dim,
                mamba_num_groups=cfg.n_groups,
                mamba_state_dim=cfg.state_size,
                mamba_conv_kernel=cfg.conv_kernel,
                tie_word_embeddings=bool(cfg.tie_word_embeddings),
                mamba_proj_bias=bool(cfg.use_bias),
                mamba_conv_bias=bool(cfg.use_conv_bias),
            )
        raise ArchError(
            f"model_type={model_type!r} is not supported; supported families: {', '.join(SUPPORTED_FAMILIES)}"
        )

    def hf_config_fields(self) -> dict[str, Any]:
        """The HF config fields this shape determines (other fields are kept from a base config)."""
        if self.family == "mamba2":
            return dict(
                hidden_size=self.hidden_size, vocab_size=self.vocab_size, num_hidden_layers=self.num_layers,
                num_heads=self.mamba_num_heads, head_dim=self.mamba_head_dim,
                expand=self.mamba_inner_size // self.hidden_size, n_groups=self.mamba_num_groups,
                state_size=self.mamba_state_dim, conv_kernel=self.mamba_conv_kernel,
                tie_word_embeddings=self.tie_word_embeddings, use_bias=self.mamba_proj_bias,
                use_conv_bias=self.mamba_conv_bias,
            )
        return dict(
            hidden_size=self.hidden_size, vocab_size=self.vocab_size,
            layers_block_type=_pattern_to_block_types(self.pattern),
            intermediate_size=max(self.ffn_hidden_size, 1),
            num_attention_heads=max(self.num_attention_heads, 1),
            num_key_value_heads=max(self.num_query_groups, 1),
            head_dim=max(self.attention_head_dim, 1),
            mamba_num_heads=max(self.mamba_num_heads, 1), mamba_head_dim=max(self.mamba_head_dim, 1),
            n_groups=self.mamba_num_groups, ssm_state_size=self.mamba_state_dim,
            conv_kernel=self.mamba_conv_kernel, tie_word_embeddings=self.tie_word_embeddings,
            use_bias=self.mamba_proj_bias, use_conv_bias=self.mamba_conv_bias, mlp_bias=self.mlp_bias,
        )

    def to_hf_config(self, base: Any | None = None) -> Any:
        """A transformers config for this shape. Fields it does not determine (norm eps, token ids,
        rope/dt settings, ...) are copied from ``base`` when given, so a pruned model keeps them."""
        from transformers import Mamba2Config, NemotronHConfig

        self.validate()
        fields = self.hf_config_fields()
        config_cls = Mamba2Config if self.family == "mamba2" else NemotronHConfig
        if base is None:
            return config_cls(**fields)
        if getattr(base, "model_type", None) != config_cls.model_type:
            raise ArchError(f"base config is {base.model_type!r} but this arch is family={self.family!r}")
        merged = base.to_dict()
        for stale in ("hybrid_override_pattern", "num_hidden_layers", "layer_types"):
            if self.family == "nemotron_h":
                merged.pop(stale, None)
        merged.update(fields)
        return config_cls(**merged)

    def describe(self) -> str:
        """One line for logs and tables."""
        parts = [f"{self.num_layers}L", f"h={self.hidden_size}"]
        if MLP in self.pattern:
            parts.append(f"ffn={self.ffn_hidden_size}")
        if MAMBA in self.pattern:
            parts.append(f"mamba={self.mamba_num_heads}x{self.mamba_head_dim}/g{self.mamba_num_groups}")
        if ATTENTION in self.pattern:
            parts.append(f"attn={self.num_attention_heads}/{self.num_query_groups}x{self.attention_head_dim}")
        return " ".join(parts) + f" ({self.num_params() / 1e6:.2f}M params)"


def _positive(arch: HybridArch, *names: str) -> None:
    for name in names:
        value = getattr(arch, name)
        if not isinstance(value, int) or value <= 0:
            raise ArchError(f"{name}={value!r} must be a positive integer for pattern {arch.pattern!r}")


_BLOCK_TYPES = {MAMBA: "linear_attention", ATTENTION: "full_attention", MLP: "mlp"}


def _pattern_to_block_types(pattern: str) -> list[str]:
    return [_BLOCK_TYPES[s] for s in pattern]


# --------------------------------------------------------------------------- presets
NEMOTRON_H_8B_PATTERN = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"

_NEMOTRON_H_8B = HybridArch(
    family="nemotron_h", pattern=NEMOTRON_H_8B_PATTERN, hidden_size=4096, vocab_size=131072,
    ffn_hidden_size=21504, num_attention_heads=32, num_query_groups=8, attention_head_dim=128,
    mamba_num_heads=128, mamba_head_dim=64, mamba_num_groups=8, mamba_state_dim=128, mamba_conv_kernel=4,
)


def _mamba2(hidden: int, layers: int) -> HybridArch:
    # state-spaces/mamba2-*: expand 2, head_dim 64, one group, state 128, vocab 50277 padded to 50288.
    return HybridArch(
        family="mamba2", pattern=MAMBA * layers, hidden_size=hidden, vocab_size=50288,
        mamba_num_heads=2 * hidden // 64, mamba_head_dim=64, mamba_num_groups=1, mamba_state_dim=128,
        mamba_conv_kernel=4, tie_word_embeddings=True,
    )


#: The built-in default teacher, trained here on CPU: every Nemotron-H layer kind, 4 Mamba groups
#: of 4 heads (so group-aware pruning is exercised), GQA attention, the 32000-token offline tokenizer.
TINY_TEACHER = HybridArch(
    family="nemotron_h", pattern="M-M-*M-M-*M-", hidden_size=256, vocab_size=32000, ffn_hidden_size=1024,
    num_attention_heads=8, num_query_groups=2, attention_head_dim=32, mamba_num_heads=16, mamba_head_dim=32,
    mamba_num_groups=4, mamba_state_dim=32, mamba_conv_kernel=4,
)

PRESETS: dict[str, HybridArch] = {
    "tiny": TINY_TEACHER,
    "nemotron-h-8b": _NEMOTRON_H_8B,
    # The paper's final pruned shape (Table 1): width-only, 52 layers kept.
    "nemotron-h-4b": dataclasses.replace(_NEMOTRON_H_8B, hidden_size=3072, ffn_hidden_size=12288,
                                         mamba_num_heads=112),
    "mamba2-130m": _mamba2(768, 24),
    "mamba2-370m": _mamba2(1024, 48),
    "mamba2-780m": _mamba2(1536, 48),
    "mamba2-1.3b": _mamba2(2048, 48),
    "mamba2-2.7b": _mamba2(2560, 64),
}


def preset(name: str) -> HybridArch:
    """A published shape by name (see ``PRESETS``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ArchError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
