"""Evaluation: lm-eval-harness (offline local tasks), offline RULER, speed, and one report.

* :func:`run_lm_eval` - lm-eval's ``HFLM`` on an in-memory model or a checkpoint folder.
* :func:`register_generation_task` / :func:`register_local_task` - add offline lm-eval tasks.
* :func:`run_ruler` - RULER long-context tasks generated offline, sized with the model's tokenizer.
* :func:`compare_speed` - time to first token and decode throughput of several models side by side.
* :func:`evaluate_models` / :func:`save_report` - all of it for a model and a baseline, written as
  JSON/Markdown/PNG (the ``nemo-minitron eval`` stage, :mod:`nemo_minitron.stages.eval`, wires them).

lm-eval itself is imported only when :func:`run_lm_eval` runs.
"""

from nemo_minitron.evaluate.lm_eval_adapter import default_tasks, flatten_results, load_model_and_tokenizer, run_lm_eval
from nemo_minitron.evaluate.local_tasks import (CLOZE_MC, CORPUS_PPL, cloze_records, local_task_names,
                                                materialize_tasks, register_generation_task, register_local_task,
                                                unregister_local_task)
from nemo_minitron.evaluate.report import evaluate_models, save_report, write_report
from nemo_minitron.evaluate.ruler import (TASKS as RULER_TASKS, RulerSample, generate_ruler_samples, ruler_average,
                                          run_ruler, score_all, score_part, string_match_all, string_match_part)
from nemo_minitron.evaluate.speed import SpeedResult, compare_speed, time_generate

__all__ = [
    "CLOZE_MC", "CORPUS_PPL", "RULER_TASKS", "RulerSample", "SpeedResult", "cloze_records", "compare_speed",
    "default_tasks", "evaluate_models", "flatten_results", "generate_ruler_samples", "load_model_and_tokenizer",
    "local_task_names", "materialize_tasks", "register_generation_task", "register_local_task", "ruler_average",
    "run_lm_eval", "run_ruler", "save_report", "score_all", "score_part", "string_match_all", "string_match_part",
    "time_generate", "unregister_local_task", "write_report",
]
