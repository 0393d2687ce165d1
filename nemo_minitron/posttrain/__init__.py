"""Post-training (paper 4.3): SFT-KD with cached top-k teacher logits, RPO/DPO alignment,
long-context SFT, and checkable-task evaluation. Stage functions live in :mod:`.run`."""

from .generate import evaluate_records, generate_answers, generate_ids, score_instruct_tasks
from .modules import RPOModule, SFTKDModule, preference_collate
from .run import (long_context, make_instruct_teacher, make_preference_pairs, rpo, sample_preference_pairs,
                  sft_kd)
from .topk_cache import (CacheMismatchError, TopKDataset, build_topk_cache, checkpoint_fingerprint,
                         model_fingerprint, topk_collate)

__all__ = [
    "score_instruct_tasks", "evaluate_records", "generate_answers", "generate_ids", "RPOModule", "SFTKDModule",
    "preference_collate", "long_context", "make_instruct_teacher", "make_preference_pairs", "rpo",
    "sample_preference_pairs", "sft_kd", "CacheMismatchError", "TopKDataset", "build_topk_cache",
    "checkpoint_fingerprint", "model_fingerprint", "topk_collate",
]
