"""Logit distillation: losses, the Lightning module, resumable data order, the distill stage."""

from .losses import kd_loss, kd_loss_reference, shifted_cross_entropy
from .module import DistillationModule, VocabularyMismatchError, check_same_vocabulary
from .run import distill_checkpoint, validation_loss

__all__ = ["kd_loss", "kd_loss_reference", "shifted_cross_entropy", "DistillationModule",
           "VocabularyMismatchError", "check_same_vocabulary", "distill_checkpoint", "validation_loss"]
