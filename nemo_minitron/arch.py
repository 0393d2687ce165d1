"""HybridArch: the shape of a hybrid Mamba/Attention/MLP or plain transformer language model, and its exact size.

Pruning, search and recipes all reason about shapes before touching weights; this module is
shape math only: the layer pattern and widths, validation, exact parameter counts and presets.
``num_params()`` is exact (tested against the instantiated HF model), so a search under a
parameter budget never needs to build a model to know its size. How a family's HF config spells
a shape lives in that family's file (``nemo_minitron.models``); the methods here ask it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

#: Layer symbols in Nemotron-H's ``hybrid_override_pattern`` notation (``E``: a mixture-of-experts block).
MAMBA, ATTENTION, MLP, MOE = "M", "*", "-", "E"
LAYER_SYMBOLS = (MAMBA, ATTENTION, MLP, MOE)
#: A plain transformer decoder layer: an attention block, then an MLP block.
DECODER_LAYER = ATTENTION + MLP
#: Boolean layout fields: which optional tensors each block has (a family fixes or reads them).
LAYOUT_FLAGS = ("mamba_proj_bias", "mamba_conv_bias", "mlp_bias", "mlp_gated", "qkv_bias", "attention_out_bias",
                "qk_norm", "post_norms")
#: The flags plain transformers added; written to files only when set (see ``HybridArch.to_dict``).
TRANSFORMER_FLAGS = ("mlp_gated", "qkv_bias", "attention_out_bias", "qk_norm", "post_norms")
#: MoE block shape fields (Megatron's names) and their values in a model without MoE blocks; written to files
#: only for models with MoE blocks, so files of other models read exactly as before these fields existed.
MOE_DEFAULTS: dict[str, int] = dict(num_moe_experts=0, moe_router_topk=0, moe_ffn_hidden_size=0,
                                    moe_shared_expert_intermediate_size=0, moe_shared_experts=1,
                                    moe_router_num_groups=1, moe_router_group_topk=1)


class ArchError(ValueError):
    """An impossible or unsupported model shape; the message names the field and the fix."""


@dataclass(frozen=True)
class HybridArch:
    """Widths and layer pattern of a hybrid model.

    ``pattern`` uses one symbol per residual block: ``M`` Mamba2 mixer, ``*`` self-attention,
    ``-`` MLP, ``E`` mixture of experts (a top-k router over ``num_moe_experts`` routed expert MLPs of
    ``moe_ffn_hidden_size`` neurons, plus one always-on shared-expert MLP). ``family`` names the model family (``models.registry``), which may restrict the
    shape further (Mamba2-only models have a pattern of ``M`` only; a plain transformer's decoder
    layer is two blocks, ``*-``, so its pattern is ``*-`` repeated). A *layer* is what depth pruning
    keeps or drops whole: one block, or one decoder layer (see :attr:`layers`).
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
    family: str = "nemotron_h"
    # Bias flags: present in real checkpoints, they change the parameter count.
    mamba_proj_bias: bool = False
    mamba_conv_bias: bool = True
    mlp_bias: bool = False
    # Transformer layout: gated MLP (gate_proj, SwiGLU/GeGLU), q/k/v and o_proj biases, per-head-dim
    # RMSNorms of q and k (Qwen3, Gemma3), and a norm after each mixer as well as before (Gemma3).
    mlp_gated: bool = False
    qkv_bias: bool = False
    attention_out_bias: bool = False
    qk_norm: bool = False
    post_norms: bool = False
    # MoE blocks ('E'): routed experts, experts per token (top-k), neurons per routed expert, neurons of the
    # shared-expert MLP and how many shared experts it concatenates (Megatron: the size is their total), and the
    # router's expert groups (``n_group``) of which each token may use ``moe_router_group_topk``.
    num_moe_experts: int = 0
    moe_router_topk: int = 0
    moe_ffn_hidden_size: int = 0
    moe_shared_expert_intermediate_size: int = 0
    moe_shared_experts: int = 1
    moe_router_num_groups: int = 1
    moe_router_group_topk: int = 1

    def __post_init__(self) -> None:
        # Canonical form: widths of layer kinds the pattern lacks are 0, so two archs that
        # describe the same model compare equal however their HF configs filled those fields.
        unused: dict[str, Any] = {}
        if ATTENTION not in self.pattern:
            unused.update(num_attention_heads=0, num_query_groups=0, attention_head_dim=0, qkv_bias=False,
                          attention_out_bias=False, qk_norm=False)
        if MLP not in self.pattern:
            unused.update(ffn_hidden_size=0, mlp_gated=False)
            if MOE not in self.pattern:  # the shared expert is an MLP with the same bias setting
                unused.update(mlp_bias=False)
        if MOE not in self.pattern:
            unused.update(MOE_DEFAULTS)
        if MAMBA not in self.pattern:
            unused.update(mamba_num_heads=0, mamba_head_dim=0, mamba_num_groups=1, mamba_state_dim=128,
                          mamba_conv_kernel=4, mamba_proj_bias=False, mamba_conv_bias=True)
        for name, value in unused.items():
            object.__setattr__(self, name, value)

    # ----------------------------------------------------------------- derived shapes
    @property
    def layers(self) -> tuple[tuple[int, ...], ...]:
        """Pattern positions of each layer: the blocks depth pruning keeps or drops together, and
        that layer importance scores as one (a decoder layer's attention and MLP blocks)."""
        size = _family(self.family).blocks_per_layer
        return tuple(tuple(range(i, min(i + size, len(self.pattern)))) for i in range(0, len(self.pattern), size))

    @property
    def num_layers(self) -> int:
        """Layers (decoder layers of a plain transformer; blocks of a hybrid)."""
        return len(self.layers)

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
        family = _family(self.family)  # unknown family: an error naming the supported ones
        if not self.pattern:
            raise ArchError("pattern is empty: a model needs at least one layer (e.g. 'M-M*-')")
        bad = sorted(set(self.pattern) - set(LAYER_SYMBOLS))
        if bad:
            raise ArchError(
                f"pattern {self.pattern!r} has unknown layer symbols {bad}; valid symbols are "
                "'M' (Mamba), '*' (attention), '-' (MLP), 'E' (mixture of experts)"
            )
        _positive(self, "hidden_size", "vocab_size")
        family.check_layout_flags(self)
        if MAMBA in self.pattern:
            _positive(self, "mamba_num_heads", "mamba_head_dim", "mamba_num_groups", "mamba_state_dim",
                      "mamba_conv_kernel")
            if self.mamba_num_heads % self.mamba_num_groups:
                raise ArchError(
                    f"mamba_num_heads={self.mamba_num_heads} is not divisible by mamba_num_groups="
                    f"{self.mamba_num_groups}: every Mamba group must keep the same number of heads; "
                    f"use a multiple of {self.mamba_num_groups}"
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
        if MOE in self.pattern:
            self._validate_moe()
        family.check_arch(self)
        return self

    def _validate_moe(self) -> None:
        _positive(self, *MOE_DEFAULTS)
        experts, groups = self.num_moe_experts, self.moe_router_num_groups
        if experts % groups:
            raise ArchError(f"num_moe_experts={experts} is not divisible by moe_router_num_groups={groups} (n_group): "
                            f"every router group must keep the same number of experts; use a multiple of {groups}")
        if experts // groups < 2:
            raise ArchError(f"num_moe_experts={experts} leaves {experts // groups} expert(s) per router group; the "
                            "router scores each group by its best two experts, so keep at least "
                            f"{2 * groups} experts")
        if self.moe_router_group_topk > groups:
            raise ArchError(f"moe_router_group_topk={self.moe_router_group_topk} (topk_group) exceeds "
                            f"moe_router_num_groups={groups} (n_group)")
        reachable = self.moe_router_group_topk * experts // groups
        if self.moe_router_topk > reachable:
            raise ArchError(f"moe_router_topk={self.moe_router_topk} (num_experts_per_tok) exceeds the {reachable} "
                            f"experts a token can reach (num_moe_experts={experts}, {groups} router group(s), "
                            f"{self.moe_router_group_topk} used per token): keep at least "
                            f"{groups * -(-self.moe_router_topk // self.moe_router_group_topk)} experts")
        if self.moe_shared_expert_intermediate_size % self.moe_shared_experts:
            raise ArchError(
                f"moe_shared_expert_intermediate_size={self.moe_shared_expert_intermediate_size} is not divisible by "
                f"moe_shared_experts={self.moe_shared_experts} (n_shared_experts): the size is the total of that many "
                f"equal shared experts; use a multiple of {self.moe_shared_experts}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (plans, scores, caches). Transformer layout flags and MoE fields appear only when
        set, so files of other models read exactly as before those fields existed; ``HybridArch(**d)`` restores all."""
        data = dataclasses.asdict(self)
        for flag in TRANSFORMER_FLAGS:
            if not data[flag]:
                del data[flag]
        if MOE not in self.pattern:
            for name in MOE_DEFAULTS:
                del data[name]
        return data

    def replace(self, **changes: Any) -> HybridArch:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes).validate()

    # ----------------------------------------------------------------- size
    def layer_params(self, symbol: str) -> int:
        """Parameters of one block of the given kind, including its norms."""
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
            n += (q + 2 * kv) if self.qkv_bias else 0
            n += h if self.attention_out_bias else 0
            n += 2 * self.attention_head_dim if self.qk_norm else 0  # one norm each for q and k, shared by heads
        elif symbol == MLP:
            n = self._mlp_params(self.ffn_hidden_size, 3 if self.mlp_gated else 2)
        elif symbol == MOE:
            n = self._moe_params(self.num_moe_experts)
        else:
            raise ArchError(f"unknown layer symbol {symbol!r}")
        return n + h * (2 if self.post_norms else 1)  # block pre-norm (and post-norm)

    def _mlp_params(self, f: int, mats: int = 2) -> int:
        """One MLP of ``f`` neurons (``mats`` weight matrices; biases when ``mlp_bias``)."""
        return mats * self.hidden_size * f + (((mats - 1) * f + self.hidden_size) if self.mlp_bias else 0)

    def _moe_params(self, experts: int) -> int:
        """An MoE mixer with ``experts`` routed experts (all of them, or the top-k one token uses): the router
        (a row per expert; its score-correction bias is a buffer, not a parameter), the routed experts'
        up/down matrices (no biases) and the shared expert."""
        h = self.hidden_size
        return (self.num_moe_experts * h + experts * 2 * self.moe_ffn_hidden_size * h
                + self._mlp_params(self.moe_shared_expert_intermediate_size))

    def layer_active_params(self, symbol: str) -> int:
        """Parameters one token uses in one block: an MoE block's router, shared expert and top-k routed experts;
        every other block is used whole."""
        if symbol != MOE:
            return self.layer_params(symbol)
        return self.layer_params(MOE) - self._moe_params(self.num_moe_experts) + self._moe_params(self.moe_router_topk)

    def num_params(self) -> int:
        """Exact ``sum(p.numel() for p in model.parameters())`` of the HF model of this shape."""
        return self._embeddings_and_head() + sum(self.layer_params(s) for s in self.pattern)

    def num_active_params(self) -> int:
        """Parameters one token's forward pass uses: ``num_params`` less the routed experts a token is not sent to
        (the router, shared expert and everything outside MoE blocks count whole). Equals ``num_params`` for a
        model without MoE blocks."""
        return self._embeddings_and_head() + sum(self.layer_active_params(s) for s in self.pattern)

    def _embeddings_and_head(self) -> int:
        embed = self.vocab_size * self.hidden_size
        head = 0 if self.tie_word_embeddings else embed
        return embed + head + self.hidden_size  # + final norm

    # ----------------------------------------------------------------- HF configs (asked of the family)
    @classmethod
    def from_hf_config(cls, cfg: Any) -> HybridArch:
        """The shape of an HF config of any supported family."""
        from .models.registry import family_for_model_type

        return family_for_model_type(getattr(cfg, "model_type", None)).arch_from_config(cfg)

    def to_hf_config(self, base: Any | None = None) -> Any:
        """A validated shape's transformers config; fields it does not determine come from ``base``."""
        return _family(self.family).hf_config(self, base)

    def describe(self) -> str:
        """One line for logs and tables."""
        parts = [f"{self.num_layers}L", f"h={self.hidden_size}"]
        if MLP in self.pattern:
            parts.append(f"ffn={self.ffn_hidden_size}")
        if MAMBA in self.pattern:
            parts.append(f"mamba={self.mamba_num_heads}x{self.mamba_head_dim}/g{self.mamba_num_groups}")
        if ATTENTION in self.pattern:
            parts.append(f"attn={self.num_attention_heads}/{self.num_query_groups}x{self.attention_head_dim}")
        if MOE in self.pattern:
            parts.append(f"moe={self.num_moe_experts}(top{self.moe_router_topk})x{self.moe_ffn_hidden_size}"
                         f"+shared{self.moe_shared_expert_intermediate_size}")
            return " ".join(parts) + (f" ({self.num_params() / 1e6:.2f}M params, "
                                      f"{self.num_active_params() / 1e6:.2f}M active)")
        return " ".join(parts) + f" ({self.num_params() / 1e6:.2f}M params)"


def _family(name: str) -> Any:
    from .models.registry import family_named  # models build on this module: import on use

    return family_named(name)


def _positive(arch: HybridArch, *names: str) -> None:
    for name in names:
        value = getattr(arch, name)
        if not isinstance(value, int) or value <= 0:
            raise ArchError(f"{name}={value!r} must be a positive integer for pattern {arch.pattern!r}")


# --------------------------------------------------------------------------- presets
NEMOTRON_H_8B_PATTERN = "M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M*-M-M-M-M-M-"

_NEMOTRON_H_8B = HybridArch(
    family="nemotron_h", pattern=NEMOTRON_H_8B_PATTERN, hidden_size=4096, vocab_size=131072,
    ffn_hidden_size=21504, num_attention_heads=32, num_query_groups=8, attention_head_dim=128,
    mamba_num_heads=128, mamba_head_dim=64, mamba_num_groups=8, mamba_state_dim=128, mamba_conv_kernel=4,
)

#: Nemotron 3 Nano 30B-A3B (hub ``nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16``): 23 Mamba, 23 MoE, 6 attention
#: layers. Shape from Megatron-Bridge's ``Nemotron3NanoProvider`` (src/megatron/bridge/models/nemotronh/
#: nemotron_h_provider.py), the same values the hub config.json spells (n_routed_experts 128, num_experts_per_tok 6,
#: moe_intermediate_size 1856, moe_shared_expert_intermediate_size 3712, n_group 1, topk_group 1); docs/pruning.md.
NEMOTRON_3_NANO_PATTERN = "MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME"

_NEMOTRON_3_NANO = HybridArch(
    family="nemotron_h", pattern=NEMOTRON_3_NANO_PATTERN, hidden_size=2688, vocab_size=131072,
    num_attention_heads=32, num_query_groups=2, attention_head_dim=128,
    mamba_num_heads=64, mamba_head_dim=64, mamba_num_groups=8, mamba_state_dim=128, mamba_conv_kernel=4,
    num_moe_experts=128, moe_router_topk=6, moe_ffn_hidden_size=1856, moe_shared_expert_intermediate_size=3712,
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

#: The shipped teacher (docs/teacher.md): 14 blocks (6 Mamba2, 2 attention, 6 MLP) on the 8192-token BPE, so the
#: blocks hold 65 % of the 15.0M parameters. Mamba: 4 groups of 4 heads of 40 channels, so the ablations can halve
#: the heads within every group (2) and the channels of every head (20); state 32 (the reference scan's cost grows
#: with it); attention: 8 query heads of 40, 2 KV heads.
TEACHER = HybridArch(
    family="nemotron_h", pattern="M-M-*M-M-M-*M-", hidden_size=320, vocab_size=8192, ffn_hidden_size=1280,
    num_attention_heads=8, num_query_groups=2, attention_head_dim=40, mamba_num_heads=16, mamba_head_dim=40,
    mamba_num_groups=4, mamba_state_dim=32, mamba_conv_kernel=4,
)


def _decoder(family: str, layers: int, hidden: int, ffn: int, heads: int, kv_heads: int, head_dim: int, vocab: int,
             tied: bool, **flags: bool) -> HybridArch:
    """A plain transformer (every supported one has a gated MLP)."""
    return HybridArch(family=family, pattern=DECODER_LAYER * layers, hidden_size=hidden, vocab_size=vocab,
                      ffn_hidden_size=ffn, num_attention_heads=heads, num_query_groups=kv_heads,
                      attention_head_dim=head_dim, tie_word_embeddings=tied, mlp_gated=True, **flags)


_LLAMA_31_8B = _decoder("llama", 32, 4096, 14336, 32, 8, 128, 128256, tied=False)
_MISTRAL_NEMO_12B = _decoder("mistral", 40, 5120, 14336, 32, 8, 128, 131072, tied=False)

PRESETS: dict[str, HybridArch] = {
    "tiny": TINY_TEACHER,
    "teacher": TEACHER,
    "nemotron-h-8b": _NEMOTRON_H_8B,
    # The paper's final pruned shape (Table 1): width-only, 52 layers kept.
    "nemotron-h-4b": dataclasses.replace(_NEMOTRON_H_8B, hidden_size=3072, ffn_hidden_size=12288,
                                         mamba_num_heads=112),
    "nemotron-3-nano-30b-a3b": _NEMOTRON_3_NANO,
    # Model Optimizer's Nemotron-3-Nano tutorial (examples/megatron_bridge/tutorials/NVIDIA-Nemotron-3-Nano-30B-A3B-
    # BF16): the best subnet of its 3.0B-active search, 22.28B total: hidden 2688 -> 2304, 128 -> 104 experts,
    # shared expert 3712 -> 3072, every layer and every Mamba head kept.
    "nemotron-3-nano-22b-a3b": dataclasses.replace(_NEMOTRON_3_NANO, hidden_size=2304, num_moe_experts=104,
                                                   moe_shared_expert_intermediate_size=3072),
    "mamba2-130m": _mamba2(768, 24),
    "mamba2-370m": _mamba2(1024, 48),
    "mamba2-780m": _mamba2(1536, 48),
    "mamba2-1.3b": _mamba2(2048, 48),
    "mamba2-2.7b": _mamba2(2560, 64),
    # The original Minitron (arXiv 2407.14679, 2408.11796): published pruned shapes and their teachers.
    "llama-3.1-8b": _LLAMA_31_8B,
    "llama-3.1-minitron-4b-width": dataclasses.replace(_LLAMA_31_8B, hidden_size=3072, ffn_hidden_size=9216),
    "llama-3.1-minitron-4b-depth": dataclasses.replace(_LLAMA_31_8B, pattern=DECODER_LAYER * 16),
    "mistral-nemo-12b": _MISTRAL_NEMO_12B,
    "mn-minitron-8b": dataclasses.replace(_MISTRAL_NEMO_12B, hidden_size=4096, ffn_hidden_size=11520),
    # Real small checkpoints that install offline (``nemo-minitron import smollm2-135m`` / ``gemma3-270m``).
    "smollm2-135m": _decoder("llama", 30, 576, 1536, 9, 3, 64, 49152, tied=True),
    "gemma3-270m": _decoder("gemma3", 18, 640, 2048, 4, 1, 256, 262144, tied=True, qk_norm=True, post_norms=True),
}


def preset(name: str) -> HybridArch:
    """A published shape by name (see ``PRESETS``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ArchError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None
