#!/usr/bin/env python
"""Post-training on the tiny default, end to end, with checkable-task accuracy after each stage.

    base teacher -> instruct teacher (plain SFT on the tasks)
    base student (pruned ~half + briefly distilled) -> SFT-KD 1 -> SFT-KD 2 -> RPO 1 -> RPO 2
        -> long-context SFT

Accuracy is greedy, on held-out prompts of the five checkable tasks, after every stage; long-range
recall (facts stated in the first turn, asked about in the last, several hundred tokens later)
before and after long-context SFT. The stages and their settings are ``recipes/posttrain.py``'s; they
run through the pipeline's engine (:func:`nemo_minitron.experiment.run_steps`), so a finished
stage in ``--out`` is skipped and a rerun after an interruption continues where it stopped;
``--fresh`` starts over. A model is re-evaluated when its weights change.

    python scripts/posttrain_report.py --out outputs/posttrain            # the documented setting
    python scripts/posttrain_report.py --out outputs/posttrain --quick    # a reduced one (busy CPU)

Writes ``<out>/report.json`` and ``<out>/report.md`` (the table in docs/post_training.md).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nemo_minitron.atomic import write_json_atomic, write_text_atomic  # noqa: E402
from nemo_minitron.experiment import run_steps  # noqa: E402
from nemo_minitron.models import is_complete_checkpoint  # noqa: E402
from recipes.posttrain import PRUNE, SETTINGS, posttrain_steps  # noqa: E402

#: The evaluated models, in report order: (row label, the step whose output it is).
EVALUATED = [("instruct teacher", "instruct_teacher"), ("base", "distill"), ("SFT-KD 1", "sft_kd1"),
             ("SFT-KD 2", "sft_kd2"), ("RPO 1", "rpo1"), ("RPO 2", "rpo2"), ("long-context SFT", "long_context")]


def log(msg: str) -> None:
    print(f"[posttrain-report {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def find_teacher(explicit: Optional[str]) -> Path:
    """``--teacher``, else the shipped teacher (docs/teacher.md)."""
    from nemo_minitron.data.shipped_teacher import shipped_teacher

    if explicit and not is_complete_checkpoint(explicit):
        raise FileNotFoundError(f"--teacher {explicit} is not a checkpoint folder")
    return Path(explicit) if explicit else shipped_teacher()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/posttrain")
    parser.add_argument("--teacher", default=None, help="base teacher checkpoint (default: the shipped teacher)")
    parser.add_argument("--student", default=None,
                        help="a pruned + distilled student of the teacher (default: prune and distill here)")
    parser.add_argument("--quick", action="store_true", help="the reduced setting (for a busy machine)")
    parser.add_argument("--fresh", action="store_true", help="delete --out first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core box)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting = "quick" if args.quick else "full"
    cfg = SETTINGS[setting]
    out = Path(args.out)
    if args.fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)

    from nemo_minitron.posttrain.generate import score_instruct_tasks

    t0 = time.perf_counter()
    teacher = find_teacher(args.teacher)
    log(f"base teacher: {teacher}")
    student = Path(args.student) if args.student else None
    if student is not None and not is_complete_checkpoint(student):
        raise FileNotFoundError(f"--student {student} is not a checkpoint folder")
    steps = posttrain_steps(out, teacher, setting, student=student)
    seconds: dict[str, float] = {}
    for step in steps:  # one at a time, to time each; a finished one is skipped (0 s)
        start = time.perf_counter()
        ran = run_steps(f"posttrain-{step.name}", [step])["ran"]
        seconds[step.name] = round(time.perf_counter() - start, 1) if ran else 0.0
    outputs = {s.name: s.output for s in steps}
    outputs["instruct_teacher"] = next(s.output for s in reversed(steps) if s.name.startswith("instruct_teacher"))
    if student is not None:
        outputs["distill"] = student
    student = outputs["distill"]
    stages: list[tuple[str, Path]] = [(label, outputs[name]) for label, name in EVALUATED]

    results: dict[str, Any] = {}
    eval_cfg = cfg["eval"]
    evals_file = out / "evals.json"
    evals = json.loads(evals_file.read_text()) if evals_file.is_file() else {}
    for name, path in stages:
        weights = max(Path(path).glob("*.safetensors"), key=lambda f: f.stat().st_mtime)
        key = f"{name}|{path}|{weights.stat().st_mtime_ns}|{eval_cfg['n_per_task']}"  # a retrained stage is re-evaluated
        if key not in evals:
            log(f"evaluating {name}")
            long_range = tuple(eval_cfg["long_range"]) if name in ("RPO 2", "long-context SFT") else None
            start = time.perf_counter()
            evals[key] = score_instruct_tasks(str(path), n_per_task=eval_cfg["n_per_task"], long_range=long_range)
            evals[key]["eval_seconds"] = round(time.perf_counter() - start, 1)
            write_json_atomic(evals_file, evals)
        results[name] = evals[key]
    summaries = {}
    for name, path in stages:
        for f in Path(path).glob("*_summary.json"):
            summaries[name] = {k: v for k, v in json.loads(f.read_text()).items()
                               if k in ("steps", "seconds", "loss_first", "loss_last", "pairs", "topk_cache",
                                        "length_range", "mean_evidence_distance", "tokens_per_sec")}
    report = {"setting": setting, "config": cfg, "prune": PRUNE, "teacher": str(teacher), "student_base": str(student),
              "stage_seconds": seconds, "total_seconds": round(time.perf_counter() - t0, 1),
              "results": results, "summaries": summaries, "torch_threads": args.threads,
              "load_average_at_end": os.getloadavg()}
    write_json_atomic(out / "report.json", report)
    write_text_atomic(out / "report.md", render_markdown(report))
    print(render_markdown(report))
    return 0


def render_markdown(report: dict[str, Any]) -> str:
    from nemo_minitron.data.instruct_tasks import TASKS

    ev = report["config"]["eval"]
    head = "| stage | " + " | ".join(TASKS) + " | mean | long-range |"
    rule = "|---" * (len(TASKS) + 3) + "|"
    acc_rows, nll_rows = [], []
    for name, res in report["results"].items():
        lr = res.get("long_range")
        acc_rows.append(f"| {name} | " + " | ".join(f"{res['accuracy'].get(t, float('nan')):.2f}" for t in TASKS)
                        + f" | {res['mean_accuracy']:.2f} | " + (f"{lr['accuracy']:.2f}" if lr else "") + " |")
        nll = res.get("answer_nll", {})
        nll_rows.append(f"| {name} | " + " | ".join(f"{nll.get(t, float('nan')):.2f}" for t in TASKS)
                        + f" | {res.get('mean_answer_nll', float('nan')):.2f} | "
                        + (f"{lr['answer_nll']:.2f}" if lr and "answer_nll" in lr else "") + " |")
    lines = [f"Setting: `{report['setting']}`; {ev['n_per_task']} held-out prompts per task; long-range recall: "
             f"{ev['long_range'][0]} held-out conversations of {ev['long_range'][1]}-{ev['long_range'][2]} tokens "
             "(facts in the first turn, the question in the last).", "",
             "Greedy accuracy:", "", head, rule, *acc_rows, "",
             "Gold-answer NLL (nats/token, teacher forced; lower is better):", "", head, rule, *nll_rows, "",
             "Stage wall time (s): " + ", ".join(f"{k} {v}" for k, v in report["stage_seconds"].items())
             + f"; total with evaluation {report['total_seconds']} s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
