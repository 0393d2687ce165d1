"""MinitronPruningCallback: prune the LightningModule's model when fit starts, then keep training.

Pruning happens in ``setup("fit")``, which Lightning calls before it builds the optimizers, so
the optimizer only ever sees the pruned parameters and prune-then-distill is one ``Trainer.fit``.
"""

from __future__ import annotations

from typing import Optional

import lightning as L
import torch

from .config import PruningConfig
from .importance import ImportanceScores
from .oneshot import prune_model
from .plan import PruningPlan


class MinitronPruningCallback(L.Callback):
    """Replace ``getattr(pl_module, model_attr)`` by its pruned version at the start of fit.

    Give either calibration token ids ([samples, seq_len]) or precomputed ``scores``. After fit
    starts, ``plan`` and ``scores`` hold what was decided (for saving or inspection).
    """

    def __init__(self, pruning_config: PruningConfig, calibration: Optional[torch.Tensor] = None,
                 scores: Optional[ImportanceScores] = None, model_attr: str = "model", batch_size: int = 4,
                 layer_importance_samples: Optional[int] = 64):
        if calibration is None and scores is None:
            raise ValueError("MinitronPruningCallback needs calibration token ids or precomputed scores")
        self.config = pruning_config
        self.calibration = calibration
        self.scores = scores
        self.model_attr = model_attr
        self.batch_size = batch_size
        self.layer_importance_samples = layer_importance_samples
        self.plan: Optional[PruningPlan] = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or self.plan is not None:
            return
        model = getattr(pl_module, self.model_attr)
        model.to(trainer.strategy.root_device)
        pruned, self.plan, self.scores = prune_model(
            model, self.config, self.calibration, self.scores, batch_size=self.batch_size,
            layer_importance_samples=self.layer_importance_samples, progress=trainer.is_global_zero)
        setattr(pl_module, self.model_attr, pruned)
