"""One report: accuracy, RULER and speed of a model, next to a baseline (and any other models).

:func:`evaluate_models` evaluates the model (and the baseline, typically the teacher) with the
same tasks, the same RULER samples and the same speed inputs; :func:`save_report` writes
``eval_report.json`` (every number), ``eval_report.md`` (tables) and ``eval_report.png`` (bars
per task, RULER by length, speed ratio) atomically into a folder, and the RULER predictions to
``eval_ruler_samples.jsonl`` for inspection. The ``eval`` stage (:mod:`nemo_minitron.stages.eval`)
loads the checkpoints and calls both.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from nemo_minitron.atomic import write_text_atomic
from nemo_minitron.evaluate._io import atomic_write_bytes
from nemo_minitron.evaluate.lm_eval_adapter import BatchSize, run_lm_eval
from nemo_minitron.evaluate.render import benchmark_summary, to_markdown, to_png
from nemo_minitron.evaluate.ruler import RulerSample, ruler_average, run_ruler
from nemo_minitron.evaluate.speed import compare_speed

log = logging.getLogger(__name__)

REPORT_JSON = "eval_report.json"
REPORT_MD = "eval_report.md"
REPORT_PNG = "eval_report.png"
RULER_SAMPLES = "eval_ruler_samples.jsonl"

#: Defaults sized for a CPU run of the tiny default models; pass the paper's lengths on a GPU.
DEFAULT_RULER_LENGTHS = (512, 1024)


def _json_safe(value: Any) -> Any:
    """NaN/inf become ``null`` (strict JSON); int keys become strings."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _evaluate_one(model: torch.nn.Module, tokenizer: Any, path: str, tasks: List[str], ruler_lengths: List[int],
                  ruler_tasks: Optional[List[str]], ruler_samples: int, limit: Optional[int], batch_size: BatchSize,
                  max_length: Optional[int], seed: int, samples_out: List[RulerSample],
                  instruct_tasks: int = 0) -> Dict[str, Any]:
    out: Dict[str, Any] = {"path": path, "num_params": sum(p.numel() for p in model.parameters())}
    timing: Dict[str, float] = {}
    if tasks:
        start = time.perf_counter()
        out["lm_eval"] = run_lm_eval(model, tokenizer, tasks=tasks, batch_size=batch_size, max_length=max_length,
                                     limit=limit, seed=seed)
        timing["lm_eval_s"] = time.perf_counter() - start
    if ruler_lengths and ruler_samples > 0:
        start = time.perf_counter()
        scores = run_ruler(model, tokenizer, lengths=ruler_lengths, tasks=ruler_tasks,
                           samples_per_task=ruler_samples, seed=seed, samples_out=samples_out)
        out["ruler"] = {task: {str(k): v for k, v in by_len.items()} for task, by_len in scores.items()}
        out["ruler_average"] = {str(k): v for k, v in ruler_average(scores).items()}
        timing["ruler_s"] = time.perf_counter() - start
    if instruct_tasks > 0:
        from nemo_minitron.data.instruct_tasks import eval_sets
        from nemo_minitron.posttrain.generate import evaluate_records

        start = time.perf_counter()
        result = evaluate_records(model, tokenizer, eval_sets(instruct_tasks, seed),
                                  batch_size=batch_size if isinstance(batch_size, int) else 8)
        out["instruct"] = {k: result[k] for k in ("accuracy", "mean_accuracy", "answer_nll", "mean_answer_nll",
                                                  "n_per_task", "examples")}
        timing["instruct_s"] = time.perf_counter() - start
    out["timing"] = timing
    return out


def report_paths(output_dir: str, with_ruler_samples: bool = False) -> Dict[str, str]:
    folder = Path(output_dir)
    paths = {"json": folder / REPORT_JSON, "markdown": folder / REPORT_MD, "png": folder / REPORT_PNG}
    if with_ruler_samples:
        paths["ruler_samples"] = folder / RULER_SAMPLES
    return {k: str(v) for k, v in paths.items()}


def write_report(report: Dict[str, Any], output_dir: str) -> Dict[str, str]:
    """Write the JSON, Markdown and PNG of ``report`` into ``output_dir`` (each atomically).

    Also re-renders a loaded ``eval_report.json`` (``write_report(json.load(f), dir)``)."""
    paths = report_paths(output_dir)
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    safe = _json_safe(report)
    write_text_atomic(paths["json"], json.dumps(safe, indent=2) + "\n")
    write_text_atomic(paths["markdown"], to_markdown(safe) + "\n")
    atomic_write_bytes(paths["png"], to_png(safe))
    return paths


def evaluate_models(loaded: Dict[str, Tuple[torch.nn.Module, Any]], paths: Dict[str, str], *, tasks: List[str],
                    ruler_lengths: List[int], ruler_tasks: List[str], ruler_samples: int, speed: bool,
                    speed_input_len: int, speed_output_len: int, speed_batch_size: int, speed_repeats: int,
                    instruct_tasks: int, limit: Optional[int], batch_size: BatchSize, max_length: Optional[int],
                    seed: int) -> Tuple[Dict[str, Any], Dict[str, List[RulerSample]]]:
    """Evaluate in-memory models by role (``"model"``, optional ``"baseline"``, optional other
    names such as ``"pruned"``) on equal terms.

    Every role gets the same lm-eval ``tasks``, the same RULER samples and the same speed
    inputs (all models interleaved). Returns the report's ``models`` (baseline first, model last)
    and ``speed`` parts, and each role's RULER samples (for :func:`save_report`). The settings have
    no defaults here: they are the ``eval`` stage's arguments, whose defaults are the one home.
    """
    out: Dict[str, Any] = {"models": {}}
    samples: Dict[str, List[RulerSample]] = {}
    order = [r for r in ("baseline", *[r for r in loaded if r not in ("baseline", "model")], "model") if r in loaded]
    for role in order:
        model, tokenizer = loaded[role]
        log.info("evaluating %s %s", role, paths[role])
        samples[role] = []
        out["models"][role] = _evaluate_one(model, tokenizer, paths[role], tasks, ruler_lengths, ruler_tasks,
                                            ruler_samples, limit, batch_size, max_length, seed, samples[role],
                                            instruct_tasks)
    out["benchmarks"] = benchmark_summary(out)
    if speed:
        models = {role: loaded[role][0] for role in order}
        out["speed"] = compare_speed(models, input_len=speed_input_len, output_len=speed_output_len,
                                     batch_size=speed_batch_size, repeats=speed_repeats,
                                     baseline="baseline" if "baseline" in models else "model", seed=seed)
    return out, samples


def save_report(report: Dict[str, Any], samples: Dict[str, List[RulerSample]], output_dir: str) -> Dict[str, str]:
    """Write the RULER predictions (if any) and the report files; records their paths in ``report``."""
    rows = [json.dumps({"role": role, **s.to_dict()}) for role, items in samples.items() for s in items]
    if rows:
        write_text_atomic(Path(output_dir) / RULER_SAMPLES, "\n".join(rows) + "\n")
    report["files"] = report_paths(output_dir, with_ruler_samples=bool(rows))
    write_report(report, output_dir)
    log.info("evaluation report written to %s", output_dir)
    return report["files"]
