"""One-shot pruning of an in-memory model: score (unless scores are given), plan, trim."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from .config import PruningConfig
from .importance import ImportanceScores, estimate_importance
from .plan import PruningPlan
from .rank import make_plan
from .trim import apply_plan


def prune_model(model: nn.Module, config: PruningConfig, calibration: Optional[torch.Tensor] = None,
                scores: Optional[ImportanceScores] = None, batch_size: int = 4,
                layer_importance_samples: Optional[int] = 256, progress: bool = True,
                ) -> tuple[nn.Module, PruningPlan, ImportanceScores]:
    """Score (unless ``scores`` are given), plan and trim an in-memory model."""
    if scores is None:
        if calibration is None:
            raise ValueError("pass calibration token ids or precomputed scores")
        scores = estimate_importance(model, calibration, batch_size=batch_size,
                                     kl_max_samples=layer_importance_samples, progress=progress)
    plan = make_plan(scores, config)
    return apply_plan(model, plan), plan, scores
