"""The one training harness of every stage: :class:`TrainConfig` / :class:`OptimConfig`, the
optimizer recipe, the resumable step-indexed data module, the LightningModules (causal LM,
distillation, SFT / SFT-KD, RPO) and :func:`fit`, the only builder of a Lightning Trainer."""

from .config import OptimConfig, TrainConfig, call_with_settings, with_overrides
from .data import PackedRows, StepBatchSampler, StepData, packed_loader
from .distillation import DistillationModule, VocabularyMismatchError, check_same_tokenizer, check_same_vocabulary
from .metrics import LossHistory, TokensPerSecond, unigram_loss, validation_loss
from .modules import CausalLMModule, FrozenPeerMixin, TrainModule
from .optim import configure_optimizer, cosine_with_warmup, make_adamw, param_groups
from .posttraining import RPOModule, SFTKDModule, pad_pair_batch
from .trainer import FitResult, build_trainer, fit, work_dir_of

__all__ = [
    "OptimConfig", "TrainConfig", "call_with_settings", "with_overrides", "PackedRows", "StepBatchSampler",
    "StepData", "packed_loader",
    "DistillationModule", "VocabularyMismatchError", "check_same_tokenizer", "check_same_vocabulary", "LossHistory",
    "TokensPerSecond", "unigram_loss", "validation_loss", "CausalLMModule", "FrozenPeerMixin", "TrainModule",
    "configure_optimizer", "cosine_with_warmup", "make_adamw", "param_groups", "RPOModule", "SFTKDModule",
    "pad_pair_batch", "FitResult", "build_trainer", "fit", "work_dir_of",
]
