#!/usr/bin/env python
"""Post-training on the tiny default, end to end, with checkable-task accuracy after each stage.

    base teacher -> instruct teacher (plain SFT on the tasks)
    base student (pruned ~half + briefly distilled) -> SFT-KD 1 -> SFT-KD 2 -> RPO 1 -> RPO 2
        -> long-context SFT

Accuracy is greedy, on held-out prompts of the five checkable tasks, after every stage; long-range
recall (facts stated in the first turn, asked about in the last, several hundred tokens later)
before and after long-context SFT. Every stage is cached in ``--out`` (a finished checkpoint is
reused), so a rerun after an interruption continues where it stopped; ``--fresh`` starts over.

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
from typing import Any, Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from nemo_minitron.models import is_complete_checkpoint  # noqa: E402

#: Stage settings. "full" is what docs/post_training.md reports unless it says otherwise.
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {
        # Two phases of 1500 steps (the second continues from the first with fresh data and warm-up):
        # the tasks' loss plateaus for ~1000 steps before the model starts to use the prompt.
        "teacher_sft": [dict(num_train=24000, max_steps=1500, micro_batch_size=16, global_batch_size=16, lr=2e-3,
                             warmup_steps=20, checkpoint_every=100, seed=0),
                        dict(num_train=24000, max_steps=1500, micro_batch_size=16, global_batch_size=16, lr=1.5e-3,
                             warmup_steps=20, checkpoint_every=100, seed=1)],
        "distill": dict(max_steps=60, seq_length=128, micro_batch_size=8, global_batch_size=8, lr=2e-3,
                        warmup_steps=5),
        # 400 steps per round left the student at 0.06 mean accuracy (docs/post_training.md).
        "sft_kd": dict(num_train=19200, max_steps=1200, micro_batch_size=16, global_batch_size=16, lr=2e-3,
                       warmup_steps=20, topk=100, sft_weight=0.0, checkpoint_every=100),
        "rpo": dict(num_prompts=200, num_samples=4, temperature=0.7, max_new_tokens=12, max_steps=40,
                    micro_batch_size=8, global_batch_size=8, lr=5e-5, beta=0.1, eta=1.0, sft_weight=0.1,
                    gold_chosen=True),
        "long_context": dict(min_len=512, max_len=1024, num_train=80, max_steps=40, micro_batch_size=1,
                             global_batch_size=2, lr=5e-4, warmup_steps=4),
        "eval": dict(n_per_task=40, long_range=(24, 512, 1024)),
    },
    "quick": {
        "teacher_sft": [dict(num_train=24000, max_steps=1500, micro_batch_size=16, global_batch_size=16, lr=2e-3,
                             warmup_steps=20, checkpoint_every=100, seed=0)],
        "distill": dict(max_steps=30, seq_length=128, micro_batch_size=8, global_batch_size=8, lr=2e-3,
                        warmup_steps=3),
        "sft_kd": dict(num_train=3200, max_steps=200, micro_batch_size=16, global_batch_size=16, lr=2e-3,
                       warmup_steps=10, topk=100, sft_weight=0.0, checkpoint_every=100),
        "rpo": dict(num_prompts=96, num_samples=4, temperature=0.7, max_new_tokens=12, max_steps=20,
                    micro_batch_size=8, global_batch_size=8, lr=5e-5, beta=0.1, eta=1.0, sft_weight=0.1,
                    gold_chosen=True),
        "long_context": dict(min_len=384, max_len=768, num_train=40, max_steps=20, micro_batch_size=1,
                             global_batch_size=2, lr=5e-4, warmup_steps=2),
        "eval": dict(n_per_task=24, long_range=(16, 384, 768)),
    },
}

#: The pruned student: ~45% of the tiny teacher (hidden 256 -> 128, FFN 1024 -> 512, Mamba heads 16 -> 8).
PRUNE = dict(target_hidden_size=128, target_ffn_hidden_size=512, target_mamba_num_heads=8)


def log(msg: str) -> None:
    print(f"[posttrain-report {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def cached(path: Path, what: str, build: Callable[[], Any]) -> float:
    """Run ``build`` unless ``path`` already holds a finished checkpoint; returns the seconds spent."""
    if is_complete_checkpoint(path):
        log(f"{what}: reusing {path}")
        return 0.0
    log(f"{what} -> {path}")
    start = time.perf_counter()
    build()
    return round(time.perf_counter() - start, 1)


def find_teacher(explicit: Optional[str]) -> Path:
    from nemo_minitron.stages.pretrain import default_teacher_dir, ensure_tiny_teacher

    for candidate in [explicit, "outputs/demo/teacher", str(default_teacher_dir())]:
        if candidate and is_complete_checkpoint(candidate):
            return Path(candidate)
    if explicit:
        raise FileNotFoundError(f"--teacher {explicit} is not a checkpoint folder")
    log("no trained tiny teacher found: training it (nemo_minitron.stages.pretrain.ensure_tiny_teacher, ~10+ min)")
    return ensure_tiny_teacher()


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/posttrain")
    parser.add_argument("--teacher", default=None, help="base teacher checkpoint (default: the tiny teacher)")
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
    from nemo_minitron.stages.instruct_sft import instruct_sft
    from nemo_minitron.stages.long_context import long_context
    from nemo_minitron.stages.rpo import rpo
    from nemo_minitron.stages.sft_kd import sft_kd
    from nemo_minitron.train import call_with_settings as run

    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    teacher = find_teacher(args.teacher)
    log(f"base teacher: {teacher}")
    instruct = out / "instruct_teacher"
    phases = cfg["teacher_sft"]
    source = teacher
    for i, phase in enumerate(phases, start=1):
        target = instruct if i == len(phases) else out / f"instruct_teacher_phase{i}"
        seconds[f"instruct_teacher_phase{i}"] = cached(
            target, f"instruct teacher, phase {i}/{len(phases)} (plain SFT on round 1+2 tasks)",
            lambda src=source, dst=target, kw=phase: run(instruct_sft, str(src), str(dst), progress=False, **kw))
        source = target

    if args.student:
        student = Path(args.student)
        if not is_complete_checkpoint(student):
            raise FileNotFoundError(f"--student {student} is not a checkpoint folder")
    else:
        from nemo_minitron.prune import PruningConfig
        from nemo_minitron.stages.distill import distill
        from nemo_minitron.stages.prune import prune

        pruned, student = out / "pruned", out / "student_base"
        seconds["prune"] = cached(pruned, f"prune the base teacher ({PRUNE})", lambda: prune(
            str(teacher), str(pruned), PruningConfig(**PRUNE), num_samples=32, seq_length=128,
            layer_importance_samples=16, device="cpu"))
        seconds["distill"] = cached(student, "distill the pruned student from the base teacher (LM text)",
                                    lambda: run(distill, str(teacher), str(pruned), str(student),
                                                val_check_interval=10**6, limit_val_batches=0, progress=False,
                                                **cfg["distill"]))

    stages: list[tuple[str, Path]] = [("base", student)]
    sk1, sk2, r1, r2, lc = (out / n for n in ("sft_kd1", "sft_kd2", "rpo1", "rpo2", "long_context"))
    seconds["sft_kd1"] = cached(sk1, "SFT-KD round 1 (arithmetic/reverse/copy)", lambda: run(
        sft_kd, str(instruct), str(student), str(sk1), round=1, progress=False, **cfg["sft_kd"]))
    seconds["sft_kd2"] = cached(sk2, "SFT-KD round 2 (kv_recall/fact/copy)", lambda: run(
        sft_kd, str(instruct), str(sk1), str(sk2), round=2, progress=False, **cfg["sft_kd"]))
    seconds["rpo1"] = cached(r1, "RPO round 1 (pairs sampled from SFT-KD 2)", lambda: run(
        rpo, str(sk2), str(r1), round=1, progress=False, **cfg["rpo"]))
    seconds["rpo2"] = cached(r2, "RPO round 2 (pairs sampled from RPO 1)", lambda: run(
        rpo, str(r1), str(r2), round=2, progress=False, **cfg["rpo"]))
    seconds["long_context"] = cached(lc, "long-context SFT", lambda: run(
        long_context, str(r2), str(lc), progress=False, **cfg["long_context"]))
    stages += [("SFT-KD 1", sk1), ("SFT-KD 2", sk2), ("RPO 1", r1), ("RPO 2", r2), ("long-context SFT", lc)]
    stages.insert(0, ("instruct teacher", instruct))

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
            evals_file.write_text(json.dumps(evals, indent=1))
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
    (out / "report.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "report.md").write_text(render_markdown(report))
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
