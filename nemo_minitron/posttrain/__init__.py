"""Post-training library (paper 4.3): the SFT-KD top-k teacher cache, generation and checkable-task
evaluation, preference-pair making, chat data sources. The stages are in ``nemo_minitron.stages``
(``sft_kd``, ``rpo``, ``long_context``, ``instruct_sft``); their LightningModules in ``nemo_minitron.train``."""

from .conversations import load_conversations
from .generate import score_instruct_tasks, evaluate_records, generate_answers, generate_ids
from .pairs import PairDataset, make_preference_pairs, preference_collate, sample_preference_pairs
from .topk_cache import (CacheMismatchError, TopKDataset, build_topk_cache, checkpoint_fingerprint,
                         model_fingerprint, topk_collate)

__all__ = [
    "load_conversations", "score_instruct_tasks", "evaluate_records", "generate_answers", "generate_ids",
    "PairDataset", "make_preference_pairs", "preference_collate", "sample_preference_pairs", "CacheMismatchError",
    "TopKDataset", "build_topk_cache", "checkpoint_fingerprint", "model_fingerprint", "topk_collate",
]
