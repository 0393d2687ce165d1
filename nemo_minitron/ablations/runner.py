"""Run the paper's ablations on a teacher: prune every variant from one set of saved importance
scores, distill each for the same tokens over several seeds, score it on held-out text (and,
when the settings name them, on lm-eval's standard benchmarks), time decoding, write the report.
The compared students depend on the kind of teacher (hybrid Mamba model or plain decoder:
:mod:`.variants`); everything else is shared.

Every distillation is a job whose result is cached as JSON under ``output_dir/runs/``, so an
interrupted run resumes where it stopped; jobs run in ``workers`` single-threaded processes
(two 1-thread trainings use 2 cores better than one 2-thread training at this size). Decode
speed is measured after all training, in one process, so that nothing competes with it.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import shlex
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from tqdm.auto import tqdm

from ..arch import HybridArch
from ..evaluate.speed import cpu_name
from ..atomic import write_text_atomic
from ..models import build_model, is_complete_checkpoint, load_config, load_model, load_tokenizer, save_checkpoint
from ..prune.importance import SCORES_FILE, ImportanceScores, estimate_importance
from ..prune.rank import make_plan
from ..prune.trim import apply_plan
from .report import ReportFiles, write_report
from .variants import Variant, block_params, build_variants, model_kind

#: The variant the random-init student copies and is compared with (finding 6).
PRUNED_REFERENCE = "width"


@dataclass(frozen=True)
class AblationSettings:
    """How much work each comparison gets (the values: ``recipes/ablations.py``)."""

    steps: int  #: distillation steps per student (x global_batch_size x seq_length tokens)
    seq_length: int
    micro_batch_size: int
    global_batch_size: int
    lr: float
    warmup_steps: int
    num_seeds: int  #: distillation seeds (data order; for random init also the initialisation)
    calibration_samples: int
    calibration_seq_length: int
    layer_importance_samples: int
    match_factor: int  #: the random-init student's long run, in multiples of ``steps``
    val_rows: int  #: validation rows of ``seq_length`` tokens (0 = the whole held-out split)
    speed_input_len: int
    speed_output_len: int
    speed_repeats: int
    workers: int  #: parallel single-threaded trainings
    #: lm-eval task -> documents scored (its ``limit``); empty: no benchmarks, held-out loss only
    benchmarks: dict[str, int] = field(default_factory=dict)
    benchmark_seeds: int = 1  #: distillation seeds whose students are also benchmarked
    random_init_lr: Optional[float] = None  #: the random-init student's peak lr (None: ``lr``)

    def __post_init__(self) -> None:
        if self.num_seeds < 1 or self.steps < 1 or self.match_factor < 1:
            raise ValueError("num_seeds, steps and match_factor must be >= 1")
        bad = {task: n for task, n in self.benchmarks.items() if not isinstance(n, int) or n < 1}
        if bad:
            raise ValueError(f"benchmarks={bad}: every task needs a positive number of documents (its lm-eval limit)")

    @property
    def tokens_per_run(self) -> int:
        return self.steps * self.global_batch_size * self.seq_length


#: How a student is distilled: ``distill(teacher_path, student_path, save_path, train=, optim=)`` returning
#: its summary (with ``"metrics"``); the ``distill`` stage. Picklable (a module-level function) when
#: ``workers > 1``.
DistillFn = Callable[..., dict[str, Any]]


@dataclass(frozen=True)
class Job:
    """One distillation of one student with one seed (picklable for the worker processes)."""

    variant: str
    seed: int
    teacher: str
    student: str  #: a checkpoint folder, or "" to build ``random_arch`` with ``seed``
    record: str
    work: str
    steps: int
    settings: AblationSettings
    distill: DistillFn
    random_arch: Optional[dict[str, Any]] = None
    curve: bool = False  #: validate every ``settings.steps`` steps (the tokens-to-match run)
    benchmark: bool = False  #: also score the distilled student on ``settings.benchmarks``


def _write_json(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1))


def validation_rows(tokenizer: Any, settings: AblationSettings) -> torch.Tensor:
    from ..data.tokens import corpus_tokens

    rows = corpus_tokens(tokenizer, settings.seq_length, split="validation")
    return rows[: settings.val_rows] if settings.val_rows else rows


#: Documents lm-eval scores per forward batch (the benchmarks).
BENCHMARK_BATCH = 16


def run_benchmarks(model: torch.nn.Module, tokenizer: Any, settings: AblationSettings) -> dict[str, dict[str, float]]:
    """``{task: {metric: value}}`` of lm-eval's standard tasks, each on its first ``limit`` documents."""
    from ..evaluate.lm_eval_adapter import run_lm_eval

    scores: dict[str, dict[str, float]] = {}
    for task, limit in settings.benchmarks.items():  # one call per task: each has its own limit
        scores.update(run_lm_eval(model, tokenizer, tasks=[task], limit=limit, batch_size=BENCHMARK_BATCH,
                                  device="cpu"))
    return scores


def read_val_curve(log_dir: Path, tokens_per_step: int) -> list[dict[str, float]]:
    """``[{step, tokens, val_loss}]`` from the Lightning CSV log (student cross-entropy on the val split)."""
    points = []
    for metrics in sorted(log_dir.glob("version_*/metrics.csv")):
        with metrics.open() as f:
            for row in csv.DictReader(f):
                if row.get("val/student_ce"):
                    step = int(row["step"]) + 1  # Lightning logs the 0-based index of the last batch
                    points.append({"step": step, "tokens": step * tokens_per_step,
                                   "val_loss": float(row["val/student_ce"])})
    return sorted({p["step"]: p for p in points}.values(), key=lambda p: p["step"])


def run_job(job: Job) -> dict[str, Any]:
    """Distill one student, measure its validation loss, keep the JSON record, drop the weights."""
    from ..train import OptimConfig, TrainConfig, validation_loss

    record_path = Path(job.record)
    if record_path.is_file():
        return json.loads(record_path.read_text())
    torch.set_num_threads(1)
    s, work = job.settings, Path(job.work)
    tokenizer = load_tokenizer(job.teacher)
    student = job.student
    lr = s.lr
    if job.random_arch is not None:
        student, lr = str(work / "init"), s.random_init_lr or s.lr
        if not is_complete_checkpoint(student):
            # The teacher's config as the base: the same rope, norms and vocabulary, only the shape differs.
            model = build_model(HybridArch(**job.random_arch), base_config=load_config(job.teacher), seed=job.seed)
            save_checkpoint(model, student, tokenizer=tokenizer)
    start = time.perf_counter()
    val_batches = -(-s.val_rows // s.micro_batch_size) if s.val_rows else 10**6
    # keep_work: the validation curve is read from the work folder's logs; the whole job folder goes below.
    summary = job.distill(
        job.teacher, student, str(work / "student"),
        train=TrainConfig(seq_length=s.seq_length, micro_batch_size=s.micro_batch_size,
                           global_batch_size=s.global_batch_size, max_steps=job.steps,
                           val_check_interval=s.steps if job.curve else job.steps,
                           limit_val_batches=val_batches if job.curve else 0, seed=job.seed,
                           work_dir=str(work / "train"), keep_work=True, progress=False,
                           # a 1x job resumes as a whole (its record); only the long run keeps checkpoints
                           checkpoint_every=s.steps if job.curve else job.steps + 1),
        optim=OptimConfig(lr=lr, warmup_steps=s.warmup_steps))
    distilled = load_model(work / "student")
    record = {"variant": job.variant, "seed": job.seed, "steps": job.steps,
              "tokens": job.steps * s.global_batch_size * s.seq_length, "lr": lr,
              "val_loss": validation_loss(distilled, validation_rows(tokenizer, s)),
              "train_seconds": round(time.perf_counter() - start, 1), "final_train_kd": summary["metrics"].get("kd"),
              "train_tokens_per_sec": summary.get("tokens_per_sec")}
    if job.benchmark and s.benchmarks:
        bench_start = time.perf_counter()
        record["benchmarks"] = run_benchmarks(distilled, tokenizer, s)
        record["benchmark_seconds"] = round(time.perf_counter() - bench_start, 1)
    if job.curve:
        record["curve"] = read_val_curve(work / "train" / "logs", s.global_batch_size * s.seq_length)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    _write_json(record_path, record)
    shutil.rmtree(work, ignore_errors=True)  # a student + optimizer state per job would fill the disk
    return record


def _init_worker() -> None:
    torch.set_num_threads(1)
    if sys.platform.startswith("linux"):
        # Die with the parent: Lightning swallows SIGTERM, so killing the script would otherwise
        # leave orphaned trainings running (PR_SET_PDEATHSIG = 1).
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


def run_jobs(jobs: list[Job], workers: int, progress: bool) -> list[dict[str, Any]]:
    bar = tqdm(total=len(jobs), desc="ablations: distill", unit="run", disable=not progress)
    results = []
    if workers <= 1:
        for job in jobs:
            results.append(run_job(job))
            bar.update()
    else:
        ctx = multiprocessing.get_context("spawn")  # fresh interpreters: no forked torch thread pools
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker) as pool:
            futures = [pool.submit(run_job, job) for job in jobs]
            for future in as_completed(futures):
                results.append(future.result())
                bar.update()
    bar.close()
    return results


def prepare_students(teacher: torch.nn.Module, tokenizer: Any, scores: ImportanceScores, variants: list[Variant],
                     out: Path, val: torch.Tensor, settings: AblationSettings) -> dict[str, dict[str, Any]]:
    """Prune (or build at random) every variant once; record its shape, size, zero-shot loss and
    (pruned students, when the settings name benchmarks) zero-shot benchmark scores."""
    from ..train import validation_loss

    source = HybridArch.from_hf_config(teacher.config)
    info: dict[str, dict[str, Any]] = {}
    for variant in tqdm(variants, desc="ablations: prune", unit="variant"):
        folder = out / "students" / variant.name
        info_file = folder / "variant.json"
        if info_file.is_file():
            info[variant.name] = json.loads(info_file.read_text())
            continue
        plan = make_plan(scores, variant.config)
        model = (build_model(plan.target, base_config=teacher.config, seed=0) if variant.random_init
                 else apply_plan(teacher, plan))
        if not variant.random_init:
            save_checkpoint(model, folder / "pruned", tokenizer=tokenizer)
        arch = plan.target
        info[variant.name] = {
            "name": variant.name, "description": variant.description, "random_init": variant.random_init,
            "arch": arch.describe(), "arch_fields": arch.to_dict(), "params": arch.num_params(),
            "block_params": block_params(arch), "block_fraction": block_params(arch) / block_params(source),
            "kept_layers": plan.kept_layers, "zero_shot_loss": validation_loss(model, val),
            "pruning_config": {k: v for k, v in variant.config.__dict__.items() if v is not None},
            "matched": variant.matched, "max_seeds": variant.max_seeds,
            "dropped_layers": [k + 1 for k, blocks in enumerate(source.layers)
                               if not set(blocks) <= set(plan.kept_layers)],
        }
        if settings.benchmarks and not variant.random_init:
            info[variant.name]["zero_shot_benchmarks"] = run_benchmarks(model, tokenizer, settings)
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(info_file, info[variant.name])
    return info


def measure_speed(teacher: torch.nn.Module, out: Path, info: dict[str, dict[str, Any]],
                  settings: AblationSettings) -> dict[str, Any]:
    """Decode throughput and TTFT of every distinct pruned shape next to the teacher, in one run."""
    from ..evaluate.speed import compare_speed

    torch.set_num_threads(1)  # the same single core for everyone: the steadiest CPU comparison
    models = {"teacher": teacher}
    models.update({name: load_model(out / "students" / name / "pruned")
                   for name, rec in info.items() if not rec["random_init"]})
    return compare_speed(models, input_len=settings.speed_input_len, output_len=settings.speed_output_len,
                         repeats=settings.speed_repeats, baseline="teacher")


def make_jobs(teacher_path: str, out: Path, info: dict[str, dict[str, Any]], settings: AblationSettings,
              distill: DistillFn) -> list[Job]:
    jobs = []
    random_variants = [name for name, rec in info.items() if rec["random_init"]]
    for name in random_variants:  # the long run first: it is the critical path
        jobs.append(Job(name, 0, teacher_path, "", str(out / "runs" / f"{name}-long.json"),
                        str(out / "work" / f"{name}-long"), settings.steps * settings.match_factor, settings,
                        distill, random_arch=info[name]["arch_fields"], curve=True, benchmark=True))
    for seed in range(settings.num_seeds):
        for name, rec in info.items():
            if seed >= (rec.get("max_seeds") or settings.num_seeds):
                continue
            student = "" if rec["random_init"] else str(out / "students" / name / "pruned")
            jobs.append(Job(name, seed, teacher_path, student, str(out / "runs" / f"{name}-seed{seed}.json"),
                            str(out / "work" / f"{name}-seed{seed}"), settings.steps, settings,
                            distill, random_arch=rec["arch_fields"] if rec["random_init"] else None,
                            benchmark=seed < settings.benchmark_seeds))
    return jobs


def invocation() -> str:
    """How this process was started, for the report (``scripts/ablations.py --quick``, ``nemo-minitron ...``)."""
    argv = [Path(sys.argv[0]).name if sys.argv[0].endswith("nemo-minitron") else sys.argv[0], *sys.argv[1:]]
    return ("" if argv[0].startswith("nemo") else "python ") + shlex.join(argv)


def teacher_record(teacher: torch.nn.Module, tokenizer: Any, val: torch.Tensor, settings: AblationSettings,
                   out: Path) -> dict[str, Any]:
    """The teacher's held-out loss and benchmark scores (cached in ``out/teacher.json``)."""
    from ..train import validation_loss

    path = out / "teacher.json"
    if path.is_file():
        return json.loads(path.read_text())
    record: dict[str, Any] = {"val_loss": validation_loss(teacher, val)}
    if settings.benchmarks:
        record["benchmarks"] = run_benchmarks(teacher, tokenizer, settings)
    _write_json(path, record)
    return record


def run_ablations(teacher_path: str, output_dir: str, settings: AblationSettings, distill: DistillFn,
                  keep_layers: Optional[int] = None, docs_dir: Optional[str] = None,
                  progress: bool = True, files: Optional[ReportFiles] = None) -> dict[str, Any]:
    """Reproduce the paper's pruning ablations on ``teacher_path``, distilling students with ``distill``.

    Writes ``output_dir/results.{json,md}`` and ``ablations.png`` (other names with ``files``); with
    ``docs_dir`` also the Markdown and figure (and, for named reports, the JSON) there. Rerunning
    with the same ``output_dir`` and settings reuses every finished student and run; other
    settings are refused.
    """
    if not is_complete_checkpoint(teacher_path):
        raise FileNotFoundError(f"teacher_path={teacher_path} is not a checkpoint folder (config.json + weights)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    settings_file = out / "settings.json"
    # workers do not change results; the JSON round trip makes tuples and lists compare equal
    comparable = json.loads(json.dumps({k: v for k, v in asdict(settings).items() if k != "workers"}))
    if settings_file.is_file() and json.loads(settings_file.read_text()) != comparable:
        raise ValueError(f"{out} holds runs made with other settings ({settings_file}); use a new output_dir")
    _write_json(settings_file, comparable)
    start = time.perf_counter()

    torch.set_num_threads(max(1, settings.workers))
    teacher, tokenizer = load_model(teacher_path), load_tokenizer(teacher_path)
    source = HybridArch.from_hf_config(load_config(teacher_path))
    scores_file = out / SCORES_FILE
    if scores_file.is_file():
        scores = ImportanceScores.load(scores_file)
    else:
        from ..data.tokens import calibration_tokens

        calibration = calibration_tokens(tokenizer, settings.calibration_samples, settings.calibration_seq_length)
        scores = estimate_importance(teacher, calibration, kl_max_samples=settings.layer_importance_samples,
                                     progress=progress)
        scores.save(scores_file)
    val = validation_rows(tokenizer, settings)
    teacher_scores = teacher_record(teacher, tokenizer, val, settings, out)
    info = prepare_students(teacher, tokenizer, scores, build_variants(source, scores, keep_layers), out, val,
                            settings)
    runs = run_jobs(make_jobs(teacher_path, out, info, settings, distill), settings.workers, progress)
    speed = measure_speed(teacher, out, info, settings)
    results = {
        "kind": model_kind(source), "teacher_path": teacher_path, "teacher": source.describe(),
        "teacher_params": source.num_params(), "teacher_block_params": block_params(source),
        "teacher_val_loss": teacher_scores["val_loss"], "teacher_benchmarks": teacher_scores.get("benchmarks"),
        "settings": asdict(settings),
        "tokens_per_run": settings.tokens_per_run, "val_tokens": int(val.numel()), "variants": info, "runs": runs,
        "speed": speed, "pruned_reference": PRUNED_REFERENCE, "seconds": round(time.perf_counter() - start, 1),
        "torch": torch.__version__, "cpu_count": os.cpu_count(), "machine": f"{cpu_name()}, {os.cpu_count()} CPU(s)",
        "command": invocation(),
    }
    return write_report(results, out, Path(docs_dir) if docs_dir else None, files=files)

