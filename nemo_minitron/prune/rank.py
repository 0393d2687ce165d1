"""From importance scores to a PruningPlan: group-aware ranking (paper eq. 17-24, Algorithm 1).

Kept indices are returned in ascending source order. Any order within a group gives the same
model (tested), and ascending order makes the keep-everything plan the exact identity.
"""

from __future__ import annotations

import torch

from ..arch import ATTENTION, MAMBA, MLP, MOE, HybridArch
from .config import PruningConfig
from .importance import ImportanceScores
from .plan import PruningPlan


def top_k_sorted(scores: torch.Tensor, k: int) -> list[int]:
    """Indices of the k largest scores, ascending. Ties break toward the lower index."""
    if k > scores.numel():
        raise ValueError(f"cannot keep {k} of {scores.numel()} entries")
    order = torch.sort(scores.double(), descending=True, stable=True).indices
    return sorted(order[:k].tolist())


def rank_mamba(scores: torch.Tensor, num_groups: int, keep_heads: int, keep_channels: int) -> tuple[list[int], list[int]]:
    """Algorithm 1 of the paper for one Mamba layer.

    ``scores`` is s in R^{m_h x m_d}. Channels are ranked once for all heads (eq. 18, 20-21);
    heads are scored on the kept channels only (eq. 22) and ranked within their group (eq. 23-24),
    each group keeping ``keep_heads / num_groups``.
    """
    num_heads = scores.shape[0]
    channel_scores = scores.norm(dim=0)
    channels = top_k_sorted(channel_scores, keep_channels)
    head_scores = scores[:, channels].norm(dim=1)
    per_group_src, per_group_keep = num_heads // num_groups, keep_heads // num_groups
    heads: list[int] = []
    for g in range(num_groups):
        lo = g * per_group_src
        heads += [lo + i for i in top_k_sorted(head_scores[lo:lo + per_group_src], per_group_keep)]
    return heads, channels


def rank_grouped_heads(scores: torch.Tensor, num_groups: int, keep: int) -> list[int]:
    """Entries ranked within their group of equal contiguous groups, every group keeping keep/num_groups: attention
    heads within their KV group (GQA), routed experts within their router group, shared-expert neurons within
    their shared expert."""
    per_src, per_keep = scores.numel() // num_groups, keep // num_groups
    kept: list[int] = []
    for g in range(num_groups):
        kept += [g * per_src + i for i in top_k_sorted(scores[g * per_src:(g + 1) * per_src], per_keep)]
    return kept


def choose_layers(scores: ImportanceScores, source: HybridArch, config: PruningConfig) -> list[int]:
    """Source pattern positions to keep (ascending): the blocks of every kept layer (``source.layers``)."""
    n = source.num_layers
    if config.drop_layers:
        dropped = {d - 1 for d in config.drop_layers}
        kept = [i for i in range(n) if i not in dropped]
    elif config.target_num_layers is not None:
        kept = top_k_sorted(scores.layer_scores(config.layer_metric), config.target_num_layers)
    else:
        kept = list(range(n))
    return [block for i in kept for block in source.layers[i]]


def _kept_layers_and_target(scores: ImportanceScores, source: HybridArch,
                            config: PruningConfig) -> tuple[list[int], HybridArch]:
    kept = choose_layers(scores, source, config)
    return kept, config.target_widths(source).replace(pattern="".join(source.pattern[i] for i in kept))


def target_arch(scores: ImportanceScores, source: HybridArch, config: PruningConfig) -> HybridArch:
    """The exact shape ``config`` prunes ``source`` to, without computing the kept channels."""
    return _kept_layers_and_target(scores, source, config)[1]


def make_plan(scores: ImportanceScores, config: PruningConfig) -> PruningPlan:
    """Rank every axis the config prunes and return a validated plan."""
    source = scores.arch
    config.check(source)
    kept_layers, target = _kept_layers_and_target(scores, source, config)
    plan = PruningPlan(source=source, target=target, kept_layers=kept_layers,
                       hidden=top_k_sorted(scores.hidden, target.hidden_size))
    mamba = scores.mamba_scores(config.mamba_metric) if MAMBA in target.pattern else {}
    for i in kept_layers:
        kind = source.pattern[i]
        if kind == MAMBA:
            plan.mamba_heads[i], plan.mamba_channels[i] = rank_mamba(
                mamba[i], source.mamba_num_groups, target.mamba_num_heads, target.mamba_head_dim)
        elif kind == MLP:
            plan.ffn[i] = top_k_sorted(scores.ffn[i], target.ffn_hidden_size)
        elif kind == ATTENTION:
            plan.attention_heads[i] = rank_grouped_heads(
                scores.attention[i], source.num_query_groups, target.num_attention_heads)
        elif kind == MOE:
            plan.moe_experts[i], plan.moe_ffn[i] = rank_experts(
                scores.moe_experts[i], scores.moe_ffn[i], source.moe_router_num_groups, target.num_moe_experts,
                target.moe_ffn_hidden_size)
            plan.moe_shared[i] = rank_grouped_heads(scores.moe_shared[i], source.moe_shared_experts,
                                                    target.moe_shared_expert_intermediate_size)
    return plan.validate()


def rank_experts(expert_scores: torch.Tensor, neuron_scores: torch.Tensor, router_groups: int, keep_experts: int,
                 keep_neurons: int) -> tuple[list[int], list[list[int]]]:
    """One MoE layer: the routed experts to keep (ranked within their router group) and, per kept expert, its own
    best ``keep_neurons`` neurons. Neurons are ranked per expert, not jointly: neuron j of one expert and neuron j
    of another are unrelated units of different MLPs, so a score summed over experts would rank nothing real."""
    experts = rank_grouped_heads(expert_scores, router_groups, keep_experts)
    return experts, [top_k_sorted(neuron_scores[e], keep_neurons) for e in experts]
