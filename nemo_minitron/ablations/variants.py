"""The pruned shapes the paper's ablations compare, derived from the teacher's own shape.

Everything is compared at (nearly) equal *non-embedding* parameters. On the tiny teacher the
32000 x 256 embedding and LM head are 75 % of all parameters, so depth-only pruning cannot
reach half of the total and halving the hidden size would dominate any comparison; the
ablations therefore keep the hidden size and prune the blocks (the paper's 8B has 13 %
embedding parameters, where the distinction matters little).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

from ..arch import MAMBA, MLP, HybridArch
from ..prune.config import PruningConfig
from ..prune.importance import ImportanceScores
from ..prune.rank import target_arch


@dataclass(frozen=True)
class Variant:
    """One compared student: how it is pruned (or that it copies another's shape from random init)."""

    name: str
    description: str
    config: PruningConfig
    random_init: bool = False  #: same shape as ``config`` would give, but freshly initialised


def embedding_params(arch: HybridArch) -> int:
    return arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)


def block_params(arch: HybridArch) -> int:
    """Parameters outside the embedding and LM head (what the ablations hold equal)."""
    return arch.num_params() - embedding_params(arch)


def pruned_arch(scores: ImportanceScores, config: PruningConfig) -> HybridArch:
    return target_arch(scores, scores.arch, config)


def matching_width_config(source: HybridArch, target_block_params: int, tolerance: float = 0.02) -> PruningConfig:
    """FFN size and Mamba head count whose block parameters match ``target_block_params``.

    Among shapes within ``tolerance`` of the target, the one that prunes FFN and Mamba heads by
    the most similar fraction (the paper's width candidates prune several axes together);
    if none is that close, the closest.
    """
    has_mlp, has_mamba = MLP in source.pattern, MAMBA in source.pattern
    ffn_step = max(8, source.ffn_hidden_size // 32) if has_mlp else 0
    ffn_values = range(ffn_step, source.ffn_hidden_size + 1, ffn_step) if has_mlp else [source.ffn_hidden_size]
    head_values = (range(source.mamba_num_groups, source.mamba_num_heads + 1, source.mamba_num_groups)
                   if has_mamba else [source.mamba_num_heads])
    options = []
    for ffn, heads in itertools.product(ffn_values, head_values):
        arch = source.replace(ffn_hidden_size=ffn, mamba_num_heads=heads)
        gap = abs(block_params(arch) - target_block_params) / target_block_params
        fractions = [f for f, used in ((ffn / source.ffn_hidden_size, has_mlp),
                                       (heads / source.mamba_num_heads, has_mamba)) if used]
        imbalance = max(fractions) - min(fractions)
        options.append((gap, imbalance, ffn, heads))
    close = [o for o in options if o[0] <= tolerance]
    _, _, ffn, heads = min(close, key=lambda o: (o[1], o[0])) if close else min(options)
    return PruningConfig(target_ffn_hidden_size=ffn if has_mlp and ffn != source.ffn_hidden_size else None,
                         target_mamba_num_heads=heads if has_mamba and heads != source.mamba_num_heads else None)


def build_variants(source: HybridArch, scores: ImportanceScores, keep_layers: Optional[int] = None) -> list[Variant]:
    """The students of findings 1-6: depth, width, Mamba heads vs channels, scoring metrics, random init.

    ``keep_layers`` (default: half the layers) sets the depth-only student; the width-only student
    is matched to its block parameters; the Mamba-only students halve heads or head channels.
    """
    if MAMBA not in source.pattern:
        raise ValueError("the ablations compare Mamba pruning axes; the teacher has no Mamba layers")
    if (source.mamba_num_heads // 2) % source.mamba_num_groups or source.mamba_head_dim < 2:
        raise ValueError(f"the teacher's Mamba shape ({source.mamba_num_heads} heads in {source.mamba_num_groups} "
                         f"groups x {source.mamba_head_dim} channels) cannot be halved within every group")
    keep_layers = keep_layers or source.num_layers // 2
    if not 1 <= keep_layers < source.num_layers:
        raise ValueError(f"keep_layers={keep_layers} must be between 1 and {source.num_layers - 1}")
    depth_kl = PruningConfig(target_num_layers=keep_layers, layer_metric="kl")
    width = matching_width_config(source, block_params(pruned_arch(scores, depth_kl)))
    heads = PruningConfig(target_mamba_num_heads=source.mamba_num_heads // 2)
    channels = PruningConfig(target_mamba_head_dim=source.mamba_head_dim // 2)

    def metric(config: PruningConfig, name: str) -> PruningConfig:
        return PruningConfig(**{**config.__dict__, "mamba_metric": name})

    return [
        Variant("width", "width only: FFN + Mamba heads (W_x scores), blocks matched to depth-kl", width),
        Variant("depth-kl", f"depth only: keep {keep_layers} layers by KL importance", depth_kl),
        Variant("depth-cosine", f"depth only: keep {keep_layers} layers by cosine importance",
                PruningConfig(target_num_layers=keep_layers, layer_metric="cosine")),
        Variant("mamba-heads", "Mamba heads halved per group (W_x scores)", heads),
        Variant("mamba-channels", "Mamba head channels halved (W_x scores)", channels),
        Variant("mamba-heads-z", "Mamba heads halved, scored from W_z", metric(heads, "z")),
        Variant("mamba-heads-out_proj", "Mamba heads halved, scored from the out_proj input", metric(heads, "out_proj")),
        Variant("mamba-heads-flap", "Mamba heads halved, scored by FLAP", metric(heads, "flap")),
        Variant("width-random-init", "the width-only shape from random init", width, random_init=True),
    ]
