"""The pruned shapes the paper's ablations compare, derived from the teacher's own shape.

Everything is compared at (nearly) equal *non-embedding* parameters. On the small hybrid teachers
the embedding and LM head are a large share of all parameters (35 % on the shipped teacher's
8192 x 320 tables, 75 % on the old tiny teacher's 32000 x 256), so depth-only pruning cannot
reach half of the total and halving the hidden size would dominate any comparison; the
ablations therefore keep the hidden size and prune the blocks (the paper's 8B has 13 %
embedding parameters, where the distinction matters little). A plain decoder (SmolLM2, Llama)
prunes Minitron's width axes instead, the hidden size included: its students are matched on the
same non-embedding count, and a smaller hidden size shrinks its embedding as a bonus, reported
in the totals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Optional

from ..arch import ATTENTION, MAMBA, MLP, ArchError, HybridArch
from ..prune.config import PruningConfig
from ..prune.importance import ImportanceScores
from ..prune.rank import target_arch


#: The kinds of teacher the ablations know (:func:`model_kind`): they compare different students.
HYBRID, DECODER = "hybrid", "decoder"


@dataclass(frozen=True)
class Variant:
    """One compared student: how it is pruned (or that it copies another's shape from random init)."""

    name: str
    description: str
    config: PruningConfig
    random_init: bool = False  #: same shape as ``config`` would give, but freshly initialised
    max_seeds: Optional[int] = None  #: distil with at most this many of the seeds (None: all)
    matched: bool = True  #: False: this axis alone cannot reach the others' block parameters


def embedding_params(arch: HybridArch) -> int:
    return arch.vocab_size * arch.hidden_size * (1 if arch.tie_word_embeddings else 2)


def block_params(arch: HybridArch) -> int:
    """Parameters outside the embedding and LM head (what the ablations hold equal)."""
    return arch.num_params() - embedding_params(arch)


def pruned_arch(scores: ImportanceScores, config: PruningConfig) -> HybridArch:
    return target_arch(scores, scores.arch, config)


#: The width axes each kind of teacher prunes together in its width-only student (``HybridArch`` fields).
#: The hybrid keeps its hidden size (see the module note); a plain decoder prunes Minitron's three
#: width axes, hidden size, FFN and attention heads (within their KV groups).
WIDTH_AXES = {HYBRID: ("ffn_hidden_size", "mamba_num_heads"),
              DECODER: ("hidden_size", "ffn_hidden_size", "num_attention_heads")}


def model_kind(arch: HybridArch) -> str:
    """``hybrid`` when the teacher has Mamba layers, else ``decoder`` (a plain transformer)."""
    return HYBRID if MAMBA in arch.pattern else DECODER


def _width_values(source: HybridArch, axis: str) -> range:
    """The sizes an axis may take: whole groups for heads, steps of 1/32 (FFN) or 1/64 (hidden)."""
    current = getattr(source, axis)
    if axis == "mamba_num_heads":
        return range(source.mamba_num_groups, current + 1, source.mamba_num_groups)
    if axis == "num_attention_heads":
        return range(source.num_query_groups, current + 1, source.num_query_groups)
    step = max(8, current // 32) if axis == "ffn_hidden_size" else max(1, current // 64)
    return range(step, current + 1, step)


def _present(source: HybridArch, axis: str) -> bool:
    return {"ffn_hidden_size": MLP, "mamba_num_heads": MAMBA, "num_attention_heads": ATTENTION}.get(
        axis, "") in source.pattern


def matching_width_config(source: HybridArch, target_block_params: int, tolerance: float = 0.02,
                          axes: Optional[tuple[str, ...]] = None) -> PruningConfig:
    """Sizes of the width ``axes`` (default: the kind's :data:`WIDTH_AXES`) whose block parameters
    match ``target_block_params``.

    Among valid shapes within ``tolerance`` of the target, the one that prunes its axes by the most
    similar fraction (the paper's width candidates prune several axes together); if none is that
    close, the closest.
    """
    axes = tuple(a for a in (axes or WIDTH_AXES[model_kind(source)]) if _present(source, a))
    if not axes:
        raise ValueError(f"the teacher ({source.describe()}) has none of the width axes asked for")
    options = []
    for values in itertools.product(*(_width_values(source, a) for a in axes)):
        try:
            arch = source.replace(**dict(zip(axes, values)))  # validates the shape
        except ArchError:  # e.g. a Llama hidden size that is not a multiple of the head count
            continue
        gap = abs(block_params(arch) - target_block_params) / target_block_params
        fractions = [v / getattr(source, a) for a, v in zip(axes, values)]
        options.append((gap, max(fractions) - min(fractions), *values))
    close = [o for o in options if o[0] <= tolerance]
    best = min(close, key=lambda o: (o[1], o[0])) if close else min(options)
    return PruningConfig(**{f"target_{a}": v for a, v in zip(axes, best[2:]) if v != getattr(source, a)})


def build_variants(source: HybridArch, scores: ImportanceScores, keep_layers: Optional[int] = None) -> list[Variant]:
    """The compared students for this kind of teacher (:func:`hybrid_variants`, :func:`decoder_variants`).

    ``keep_layers`` (default: half the layers) sets the depth-only students; the width students are
    matched to their block parameters.
    """
    keep_layers = keep_layers or source.num_layers // 2
    if not 1 <= keep_layers < source.num_layers:
        raise ValueError(f"keep_layers={keep_layers} must be between 1 and {source.num_layers - 1}")
    depth_kl = PruningConfig(target_num_layers=keep_layers, layer_metric="kl")
    target = block_params(pruned_arch(scores, depth_kl))
    depth = [Variant("depth-kl", f"depth only: keep {keep_layers} layers by KL importance", depth_kl),
             Variant("depth-cosine", f"depth only: keep {keep_layers} layers by cosine importance",
                     PruningConfig(target_num_layers=keep_layers, layer_metric="cosine"))]
    if model_kind(source) == HYBRID:
        return hybrid_variants(source, target, depth)
    return decoder_variants(source, target, depth)


def hybrid_variants(source: HybridArch, target: int, depth: list[Variant]) -> list[Variant]:
    """Findings 1-6 of the Minitron-SSM paper: depth, width, Mamba heads vs channels, scoring metrics, random init."""
    if (source.mamba_num_heads // 2) % source.mamba_num_groups or source.mamba_head_dim < 2:
        raise ValueError(f"the teacher's Mamba shape ({source.mamba_num_heads} heads in {source.mamba_num_groups} "
                         f"groups x {source.mamba_head_dim} channels) cannot be halved within every group")
    width = matching_width_config(source, target)
    heads = PruningConfig(target_mamba_num_heads=source.mamba_num_heads // 2)
    channels = PruningConfig(target_mamba_head_dim=source.mamba_head_dim // 2)

    def metric(config: PruningConfig, name: str) -> PruningConfig:
        return PruningConfig(**{**config.__dict__, "mamba_metric": name})

    return [
        Variant("width", "width only: FFN + Mamba heads (W_x scores), blocks matched to depth-kl", width),
        *depth,
        Variant("mamba-heads", "Mamba heads halved per group (W_x scores)", heads),
        Variant("mamba-channels", "Mamba head channels halved (W_x scores)", channels),
        Variant("mamba-heads-z", "Mamba heads halved, scored from W_z", metric(heads, "z")),
        Variant("mamba-heads-out_proj", "Mamba heads halved, scored from the out_proj input", metric(heads, "out_proj")),
        Variant("mamba-heads-flap", "Mamba heads halved, scored by FLAP", metric(heads, "flap")),
        Variant("width-random-init", "the width-only shape from random init", width, random_init=True),
    ]


def decoder_variants(source: HybridArch, target: int, depth: list[Variant]) -> list[Variant]:
    """A plain decoder (the original Minitron's axes): width (hidden + FFN + heads) vs depth (KL,
    cosine), each width axis alone, and the width shape from random init.

    Every student has the depth students' block parameters except ``heads-only``: attention heads
    alone cannot get there (K/V heads are kept whole, so at most the query heads beyond one per KV
    group go), and that student prunes as far as it can; it is marked unmatched. Single-axis students
    are distilled with one seed (``max_seeds=1``): they inform Table 3's ranking, not a close call.
    """
    if source.num_query_groups < 1 or source.num_attention_heads <= source.num_query_groups:
        raise ValueError(f"the teacher's attention ({source.num_attention_heads} heads in {source.num_query_groups} "
                         "KV groups) has no query heads to prune")
    width = matching_width_config(source, target)
    heads = PruningConfig(target_num_attention_heads=source.num_query_groups)
    share = 1 - block_params(source.replace(num_attention_heads=source.num_query_groups)) / block_params(source)
    return [
        Variant("width", "hidden + FFN + attention heads together (Minitron's width recipe)", width),
        *depth,
        Variant("ffn-only", "FFN neurons only", matching_width_config(source, target,
                                                                                axes=("ffn_hidden_size",)),
                max_seeds=1),
        Variant("hidden-only", "hidden (embedding) channels only",
                matching_width_config(source, target, axes=("hidden_size",)), max_seeds=1),
        Variant("heads-only", f"attention heads only, down to one per KV group: the most this axis can prune "
                              f"({share:.1%} of the block parameters)", heads, max_seeds=1, matched=False),
        Variant("width-random-init", "the width shape from random init", width, random_init=True),
    ]
