"""Minitron-SSM pruning: importance -> group-aware ranking -> plan -> trimmed HF model.

The library only; pruning a checkpoint folder is the ``prune`` stage (:mod:`nemo_minitron.stages.prune`).
"""

from .callback import MinitronPruningCallback
from .config import LAYER_METRICS, MAMBA_METRICS, PruningConfig, PruningConfigError
from .importance import ImportanceScores, estimate_importance
from .oneshot import prune_model
from .plan import PlanError, PruningPlan
from .rank import make_plan, rank_mamba
from .trim import apply_plan

__all__ = [
    "MinitronPruningCallback", "LAYER_METRICS", "MAMBA_METRICS", "PruningConfig", "PruningConfigError",
    "ImportanceScores", "estimate_importance", "PlanError", "PruningPlan", "make_plan", "rank_mamba",
    "prune_model", "apply_plan",
]
