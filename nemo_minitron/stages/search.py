"""``nemo-minitron search``: architecture search under a parameter budget (paper section 3.5).

The search itself is :func:`nemo_minitron.prune.search.search_architecture`; this stage gives
it the two pieces of training code it needs, in :func:`short_distillation`.
"""

from __future__ import annotations

from typing import Any, Optional

from nemo_minitron.prune.search import CandidateDistiller, LossFn, SearchSpace, search_architecture

from ._paths import check_stage_paths

#: What a started (resumable) or finished search leaves in ``output_dir``.
SEARCH_MARKERS = ("search_summary.json", "candidates")


def short_distillation(seq_length: int, seed: int,
                       overrides: Optional[dict[str, Any]] = None) -> tuple[CandidateDistiller, LossFn]:
    """The distillation between search candidates and the loss they are compared by.

    ``max_steps`` steps of forward-KL distillation, a tenth of them warm-up, one validation at
    the end, no progress bar; ``overrides`` replaces any of these settings.
    """
    from nemo_minitron.stages.distill import distill
    from nemo_minitron.train.config import call_with_settings
    from nemo_minitron.train.metrics import validation_loss

    def distill_candidate(teacher_path: str, student_path: str, save_path: str, max_steps: int) -> None:
        call_with_settings(distill, teacher_path, student_path, save_path, **{
            "max_steps": max_steps, "warmup_steps": max(1, max_steps // 10), "seq_length": seq_length,
            "val_check_interval": max_steps, "progress": False, "seed": seed, **(overrides or {})})

    return distill_candidate, validation_loss


def search(model_path: str, output_dir: str, target_params: Optional[int] = None,
           target_active_params: Optional[int] = None, tolerance: float = 0.05, top_k: int = 3,
           distill_steps: int = 20, space: Optional[SearchSpace] = None, num_samples: int = 32,
           seq_length: int = 256, val_samples: int = 16, scores_path: Optional[str] = None,
           tie_tolerance: float = 0.005, max_candidates: int = 200,
           distill_kwargs: Optional[dict[str, Any]] = None, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Search pruned shapes of ``model_path`` with at most ``target_params`` parameters (or, for a model with MoE
    layers, ``target_active_params`` active parameters: those one token uses; ``target_params`` then only caps
    the total).

    Every shape within ``tolerance`` below the budget is pruned from one set of importance
    scores and ranked by zero-shot validation loss; the best ``top_k`` are distilled for
    ``distill_steps`` steps (``distill_kwargs`` overrides distillation settings) and the lowest
    loss wins, ties within ``tie_tolerance`` going to the faster. Writes the table, plot and
    summary to ``output_dir`` (``output_dir/selected`` is the winner's checkpoint); resumable.
    ``output_dir`` may hold an earlier search (it resumes); any other non-empty folder needs
    ``overwrite=True``. Returns the summary.
    """
    kwargs = distill_kwargs or {}
    check_stage_paths("search", output_dir, SEARCH_MARKERS, overwrite, checkpoints={"model_path": model_path},
                      data={f"distill_kwargs.{k}": kwargs.get(k) for k in ("data_path", "val_data_path")},
                      other_inputs={"scores_path": scores_path}, argument="output_dir")
    distill_candidate, validation_loss = short_distillation(seq_length, seed, distill_kwargs)
    return search_architecture(model_path, output_dir, target_params, distill_candidate, validation_loss,
                               tolerance=tolerance, top_k=top_k, distill_steps=distill_steps, space=space,
                               num_samples=num_samples, seq_length=seq_length, val_samples=val_samples,
                               scores_path=scores_path, tie_tolerance=tie_tolerance,
                               max_candidates=max_candidates, seed=seed, target_active_params=target_active_params)
