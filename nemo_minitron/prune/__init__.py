"""Minitron-SSM pruning: importance -> group-aware ranking -> plan -> trimmed HF model."""

from .callback import MinitronPruningCallback
from .config import LAYER_METRICS, MAMBA_METRICS, PruningConfig, PruningConfigError
from .importance import ImportanceScores, estimate_importance
from .plan import PlanError, PruningPlan
from .rank import make_plan, rank_mamba
from .run import prune_checkpoint, prune_model
from .trim import apply_plan

__all__ = [
    "MinitronPruningCallback", "LAYER_METRICS", "MAMBA_METRICS", "PruningConfig", "PruningConfigError",
    "ImportanceScores", "estimate_importance", "PlanError", "PruningPlan", "make_plan", "rank_mamba",
    "prune_checkpoint", "prune_model", "apply_plan",
]
