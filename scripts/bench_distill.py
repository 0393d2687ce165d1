#!/usr/bin/env python
"""Distillation benchmarks (issue 4): results go to docs/benchmarks.md, section "Distillation".

    .venv/bin/pip install -r requirements-bench.txt       # adds nvidia-modelopt
    .venv/bin/python scripts/bench_distill.py             # all three parts, ~10 min on 2 idle CPU cores
    .venv/bin/python scripts/bench_distill.py --quick     # smoke run, a few minutes
    .venv/bin/python scripts/bench_distill.py --parts step,kdmem

``quality`` runs on the shipped teacher (docs/teacher.md), or ``--teacher DIR`` (any NemotronH checkpoint
wider than the pruning targets).

Parts:
  step     one distillation step (teacher forward, student forward, loss, backward, AdamW step)
           on the tiny teacher shape and its half-size student, with our ``kd_loss`` vs the same
           step with nvidia-modelopt's ``LogitsDistillationLoss``: median time over interleaved
           repetitions in one process, and peak memory of each variant in a fresh subprocess.
  kdmem    peak memory of the KD loss alone (forward + backward) at vocab 131072: our chunked
           ``kd_loss`` vs the naive full-softmax ``kd_loss_reference``, each in a fresh subprocess.
  quality  prune the trained teacher to about half its parameters and distill it for K steps,
           against a random-init student of the same shape distilled for the same steps and tokens;
           validation loss of each, and of the teacher.

Peak memory is measured two ways, each in a fresh process that holds only the variant under test:
  rss    the process's peak RSS during the measured work (VmHWM, the value behind
         ``getrusage(RUSAGE_SELF).ru_maxrss``, reset just before the work through
         /proc/self/clear_refs) minus its RSS at that moment, when everything persistent (models,
         AdamW state, inputs) already exists. Tensors this large are mmap-allocated by glibc and
         returned on free, so RSS follows live memory.
  torch  the peak of PyTorch's CPU allocations during the measured work over the amount live at
         its start, from the ``torch.profiler`` memory timeline (no allocator slack, no Python).
Both are "extra memory of the measured work", beyond its inputs.

Writes ``<work-dir>/results-<parts>.json`` and ``.md`` (the Markdown tables), e.g. ``results-step-kdmem-quality.md``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import cpu_name  # noqa: E402

GiB = 2**30
MiB = 2**20

#: The half-size student of the tiny teacher (12L h=256 ffn=1024 mamba=16x32/g4, 21.67M params):
#: 12L h=144 ffn=512 mamba=8x32/g4 (2 heads per group, so the group constraint holds), 10.90M = 50.3%.
PRUNE_TARGETS = {"target_hidden_size": 144, "target_ffn_hidden_size": 512, "target_mamba_num_heads": 8}


# =========================================================================== measuring
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset this process's peak RSS (VmHWM) to its current RSS and return that, in bytes.

    Linux >= 4.0: writing 5 to /proc/self/clear_refs resets the high-water mark, so the peak of
    the work that follows is measured over the memory held now, not over an earlier peak (e.g.
    while the models were being built).
    """
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    """Peak RSS since the last reset (VmHWM; ``getrusage(RUSAGE_SELF).ru_maxrss`` without a reset), bytes."""
    try:
        return _status_kib("VmHWM") * 1024
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def torch_allocator_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes PyTorch allocated on CPU while ``fn`` ran, over what was live when it started."""
    from torch.profiler import ProfilerActivity, profile
    from torch.profiler._memory_profiler import MemoryProfileTimeline

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True, record_shapes=True,
                 with_stack=True) as prof:
        fn()
    _, sizes = MemoryProfileTimeline(prof._memory_profile())._coalesce_timeline(torch.device("cpu"))
    totals = [sum(s) for s in sizes]
    return int(max(totals) - totals[0]) if totals else 0


def run_worker(args: list[str], threads: int) -> dict[str, Any]:
    """Run this script as a fresh worker process and return the JSON it prints last."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--threads", str(threads), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if proc.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mem_available_bytes() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def machine() -> str:
    cpu = cpu_name()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / GiB
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}, "
            f"torch {torch.__version__}")


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "transformers", "lightning", "nvidia-modelopt"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


# =========================================================================== part 1: one step
def _modelopt_loss(temperature: float) -> Callable[..., torch.Tensor]:
    """modelopt's loss with our semantics: per-token KL summed over the vocabulary, mean over tokens.

    ``LogitsDistillationLoss(reduction="mean")`` would average ``F.kl_div`` over every (token,
    vocab) element, i.e. divide the per-token KL by the vocabulary size; ``reduction="none"``
    returns the per-token KL (it sums the last dimension), which is what a loss mask needs, and
    its forward already multiplies by T^2 as ours does.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "transformers 5.23.0 is not tested with current version of modelopt"
        from modelopt.torch.distill.losses import LogitsDistillationLoss
    loss = LogitsDistillationLoss(temperature=temperature, reduction="none")
    return lambda s, t: loss(s, t).mean()


def _ours_loss(temperature: float) -> Callable[..., torch.Tensor]:
    from nemo_minitron.losses import kd_loss

    return lambda s, t: kd_loss(s, t, temperature=temperature)


LOSSES = {"ours": _ours_loss, "modelopt": _modelopt_loss}


class StepSetup:
    """Teacher (tiny preset shape), half-size student, one batch from the default corpus, AdamW."""

    def __init__(self, batch: int, seq: int, temperature: float):
        from nemo_minitron.arch import preset
        from nemo_minitron.data import cached_packed_corpus
        from nemo_minitron.models import build_model
        from nemo_minitron.train import make_adamw

        teacher_arch = preset("tiny")
        self.student_arch = teacher_arch.replace(
            hidden_size=PRUNE_TARGETS["target_hidden_size"], ffn_hidden_size=PRUNE_TARGETS["target_ffn_hidden_size"],
            mamba_num_heads=PRUNE_TARGETS["target_mamba_num_heads"])
        self.teacher = build_model(teacher_arch, seed=0).eval().requires_grad_(False)
        self.student = build_model(self.student_arch, seed=1).train()
        self.ids = cached_packed_corpus("train", seq)[:batch].long()
        self.opt = make_adamw(self.student, lr=1e-4, weight_decay=0.01)
        self.temperature = temperature
        self.shapes = {"teacher": teacher_arch.describe(), "student": self.student_arch.describe(),
                       "batch": f"{batch} x {seq} tokens", "vocab": teacher_arch.vocab_size}

    def init_optimizer_state(self) -> None:
        """Create AdamW's moments now, so a step's memory is only what the step itself needs."""
        for group in self.opt.param_groups:
            for p in group["params"]:
                self.opt.state[p] = {"step": torch.tensor(0.0), "exp_avg": torch.zeros_like(p),
                                     "exp_avg_sq": torch.zeros_like(p)}

    def step(self, loss_fn: Callable[..., torch.Tensor], split: bool = True) -> tuple[float, float]:
        """One full step; returns (its seconds, seconds of the loss forward + backward alone).

        ``split`` times the loss's own backward separately (``autograd.grad`` to the logits, then
        the student's backward from there). That keeps the logits' gradient alive during the
        student's backward, so memory is measured with ``split=False``: a plain ``loss.backward()``.
        """
        t0 = time.perf_counter()
        self.opt.zero_grad(set_to_none=True)
        with torch.no_grad():
            t_logits = self.teacher(input_ids=self.ids, use_cache=False).logits
        s_logits = self.student(input_ids=self.ids, use_cache=False).logits
        t1 = time.perf_counter()
        loss = loss_fn(s_logits, t_logits)
        if split:
            grad = torch.autograd.grad(loss, s_logits)[0]
            t2 = time.perf_counter()
            s_logits.backward(grad)
            del grad
        else:
            t2 = float("nan")
            loss.backward()
        del s_logits, t_logits
        self.opt.step()
        self.last_loss = float(loss.detach())
        return time.perf_counter() - t0, t2 - t1


def bench_step(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    setup = StepSetup(args.step_batch, args.step_seq, args.temperature)
    fns = {name: make(args.temperature) for name, make in LOSSES.items()}

    # the two losses agree on these logits (value and gradient)
    with torch.no_grad():
        t_logits = setup.teacher(input_ids=setup.ids, use_cache=False).logits
        s_base = setup.student(input_ids=setup.ids, use_cache=False).logits
    agree = {}
    for name, fn in fns.items():
        s = s_base.clone().requires_grad_(True)
        value = fn(s, t_logits)
        value.backward()
        agree[name] = (float(value.detach()), s.grad)
    value_diff = abs(agree["ours"][0] - agree["modelopt"][0])
    grad_diff = float((agree["ours"][1] - agree["modelopt"][1]).abs().max())
    del agree, s_base, t_logits, s
    gc.collect()

    # timing: both variants in this process, interleaved, same weights at every repetition
    state = {k: v.clone() for k, v in setup.student.state_dict().items()}
    times: dict[str, list[float]] = {n: [] for n in fns}
    loss_times: dict[str, list[float]] = {n: [] for n in fns}
    order = list(fns)
    for rep in range(args.step_warmup + args.step_reps):
        for name in (order if rep % 2 == 0 else order[::-1]):
            setup.student.load_state_dict(state)
            total, loss_only = setup.step(fns[name])
            if rep >= args.step_warmup:
                times[name].append(total)
                loss_times[name].append(loss_only)
    del setup
    gc.collect()

    memory = {name: run_worker(["--worker", "step-mem", "--variant", name, "--step-batch", str(args.step_batch),
                                "--step-seq", str(args.step_seq), "--temperature", str(args.temperature),
                                "--step-reps", str(max(2, args.step_reps // 3))], args.threads)
              for name in fns}
    med = {n: statistics.median(v) for n, v in times.items()}
    med_loss = {n: statistics.median(v) for n, v in loss_times.items()}
    return {
        "shapes": memory["ours"]["shapes"], "temperature": args.temperature, "reps": args.step_reps,
        "warmup": args.step_warmup, "loss_value_abs_diff": value_diff, "loss_grad_max_abs_diff": grad_diff,
        "median_step_s": med, "median_loss_fwd_bwd_s": med_loss, "all_step_s": times,
        "time_ratio": med["ours"] / med["modelopt"], "loss_time_ratio": med_loss["ours"] / med_loss["modelopt"],
        "peak_rss_extra": {n: m["rss_extra"] for n, m in memory.items()},
        "peak_torch_extra": {n: m["torch_extra"] for n, m in memory.items()},
        "rss_ratio": memory["ours"]["rss_extra"] / memory["modelopt"]["rss_extra"],
        "torch_ratio": memory["ours"]["torch_extra"] / memory["modelopt"]["torch_extra"],
    }


def worker_step_mem(args: argparse.Namespace) -> dict[str, Any]:
    """Fresh process: peak extra memory of distillation steps with one loss variant."""
    torch.manual_seed(0)
    setup = StepSetup(args.step_batch, args.step_seq, args.temperature)
    setup.init_optimizer_state()
    fn = LOSSES[args.variant](args.temperature)
    setup.step(fn, split=False)  # warm-up: lazy initialisations of the first call are not the step's memory
    before = reset_peak_rss()
    for _ in range(args.step_reps):
        setup.step(fn, split=False)
    rss_extra = peak_rss() - before
    torch_extra = torch_allocator_peak(lambda: setup.step(fn, split=False))
    return {"variant": args.variant, "rss_extra": rss_extra, "torch_extra": torch_extra, "shapes": setup.shapes}


# =========================================================================== part 2: KD loss memory
def worker_kd_mem(args: argparse.Namespace) -> dict[str, Any]:
    """Fresh process: extra memory of one KD loss forward + backward on [tokens, vocab] fp32 logits."""
    from nemo_minitron.losses import kd_loss, kd_loss_reference

    n, v = args.tokens, args.vocab
    gen = torch.Generator().manual_seed(0)
    student = torch.randn(n, v, generator=gen).mul_(3).requires_grad_(True)
    teacher = torch.randn(n, v, generator=gen).mul_(3)
    if args.variant == "ours":
        def run() -> float:
            loss = kd_loss(student, teacher, temperature=args.temperature, chunk_tokens=args.chunk or None)
            loss.backward()
            return float(loss.detach())
    else:
        def run() -> float:
            loss = kd_loss_reference(student, teacher, temperature=args.temperature)
            loss.backward()
            return float(loss.detach())
    before = reset_peak_rss()
    t0 = time.perf_counter()
    value = run()
    seconds = time.perf_counter() - t0
    rss_extra = peak_rss() - before
    student.grad = None
    gc.collect()
    torch_extra = torch_allocator_peak(run) if args.torch_peak else None
    from nemo_minitron.losses import default_chunk_tokens

    chunk = (args.chunk or default_chunk_tokens(v)) if args.variant == "ours" else None
    return {"variant": args.variant, "tokens": n, "vocab": v, "chunk": chunk, "chunk_is_default": not args.chunk,
            "loss": value, "seconds": seconds, "rss_extra": rss_extra, "torch_extra": torch_extra,
            "input_bytes": 2 * n * v * 4}


def bench_kdmem(args: argparse.Namespace) -> dict[str, Any]:
    n, v = args.kd_tokens, args.kd_vocab
    tensor = n * v * 4
    need = 2 * tensor + 8 * tensor + 2 * GiB  # inputs + a generous bound on the naive formula's extra
    if mem_available_bytes() < need:
        raise SystemExit(f"kdmem: {need / GiB:.1f} GiB needed for tokens={n} x vocab={v}, only "
                         f"{mem_available_bytes() / GiB:.1f} GiB available; lower --kd-tokens")
    common = ["--worker", "kd-mem", "--tokens", str(n), "--vocab", str(v), "--temperature", str(args.temperature)]
    if args.kd_torch_peak:
        common.append("--torch-peak")
    rows = [run_worker([*common, "--variant", "reference"], args.threads)]
    for chunk in args.kd_chunks:  # 0: kd_loss's default
        rows.append(run_worker([*common, "--variant", "ours", "--chunk", str(chunk)], args.threads))
    naive = rows[0]
    for row in rows:
        row["rss_ratio_vs_naive"] = row["rss_extra"] / naive["rss_extra"]
        if row["torch_extra"] is not None and naive["torch_extra"]:
            row["torch_ratio_vs_naive"] = row["torch_extra"] / naive["torch_extra"]
    same = all(abs(r["loss"] - naive["loss"]) <= 1e-4 * max(1.0, abs(naive["loss"])) for r in rows)
    return {"tokens": n, "vocab": v, "tensor_bytes": tensor, "rows": rows, "values_agree": same}


# =========================================================================== part 3: quality
def resolve_teacher(args: argparse.Namespace) -> tuple[Path, str]:
    """The trained teacher: --teacher, else the shipped one (docs/teacher.md)."""
    from nemo_minitron.data.shipped_teacher import describe_shipped_teacher, shipped_teacher

    if args.teacher:
        return Path(args.teacher), "given (--teacher)"
    return shipped_teacher(), describe_shipped_teacher()


def bench_quality(args: argparse.Namespace) -> dict[str, Any]:
    from nemo_minitron.arch import HybridArch
    from nemo_minitron.data.tokens import corpus_tokens, sample_rows
    from nemo_minitron.train import call_with_settings
    from nemo_minitron.stages.distill import distill
    from nemo_minitron.models import build_model, load_config, load_model, load_tokenizer, save_checkpoint
    from nemo_minitron.prune import PruningConfig
    from nemo_minitron.stages.prune import prune
    from nemo_minitron.train import unigram_loss, validation_loss

    work = Path(args.work_dir) / "quality"
    teacher_dir, teacher_origin = resolve_teacher(args)
    t_start = time.perf_counter()
    tokenizer = load_tokenizer(teacher_dir)
    teacher_arch = HybridArch.from_hf_config(load_config(teacher_dir))
    seq = args.seq
    val = corpus_tokens(tokenizer, seq, split="validation")
    if args.val_rows and val.shape[0] > args.val_rows:
        val = sample_rows(val, args.val_rows, seed=0, what="validation")
    train = corpus_tokens(tokenizer, seq, split="train")

    def val_loss(path: Path) -> float:
        return validation_loss(load_model(path), val, batch_size=4)

    results: dict[str, Any] = {"teacher_dir": str(teacher_dir), "teacher_origin": teacher_origin,
                               "teacher_arch": teacher_arch.describe(), "val_rows": int(val.shape[0]),
                               "val_tokens_scored": int(val[:, 1:].numel()),
                               "unigram_loss": unigram_loss(train, val[:, 1:], teacher_arch.vocab_size)}
    results["teacher_loss"] = val_loss(teacher_dir)

    # the pruned student (Minitron: importance on calibration data, group-aware Mamba heads)
    pruned_dir = work / "pruned"
    t0 = time.perf_counter()
    summary = prune(str(teacher_dir), str(pruned_dir), PruningConfig(**PRUNE_TARGETS),
                    num_samples=args.calib_samples, seq_length=seq, layer_importance_samples=8)
    results["prune_seconds"] = round(time.perf_counter() - t0, 1)
    student_arch = HybridArch.from_hf_config(load_config(pruned_dir))
    results["student_arch"] = student_arch.describe()
    results["param_fraction"] = student_arch.num_params() / teacher_arch.num_params()
    assert summary["target_params"] == student_arch.num_params()

    # the baseline: same shape, random init (HF init), same tokenizer
    random_dir = work / "random_init"
    save_checkpoint(build_model(student_arch, seed=args.seed + 1), random_dir, tokenizer=tokenizer)

    kw = dict(seq_length=seq, micro_batch_size=args.batch, global_batch_size=args.batch, max_steps=args.steps,
              warmup_steps=max(1, args.steps // 10), lr=args.lr, val_check_interval=args.steps, limit_val_batches=1,
              checkpoint_every=args.steps, progress=False, seed=args.seed, temperature=1.0)
    runs = {}
    for name, src in (("pruned", pruned_dir), ("random_init", random_dir)):
        out = work / f"{name}_distilled"
        shutil.rmtree(f"{out}.work", ignore_errors=True)  # a fresh run, never a resume of an old one
        before = val_loss(src)
        t0 = time.perf_counter()
        s = call_with_settings(distill, str(teacher_dir), str(src), str(out), **kw)
        runs[name] = {"before": before, "after": val_loss(out), "seconds": round(time.perf_counter() - t0, 1),
                      "steps": s["steps"], "tokens": s["tokens"], "final_train_kd": s["metrics"].get("train/kd")}
    results["runs"] = runs
    results["config"] = {k: v for k, v in kw.items() if k not in ("progress",)}
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    return results


# =========================================================================== report
def markdown(res: dict[str, Any], command: str) -> str:
    lines = [f"Command: `{command}`", "", f"Machine: {res['machine']}; torch threads: {res['threads']}; "
             f"versions: {', '.join(f'{k} {v}' for k, v in res['versions'].items())}.", ""]
    if "step" in res:
        r = res["step"]
        sh = r["shapes"]
        lines += [
            "### One distillation step: ours vs nvidia-modelopt `LogitsDistillationLoss`", "",
            f"Teacher {sh['teacher']}, student {sh['student']}, batch {sh['batch']}, vocab {sh['vocab']}, "
            f"T={r['temperature']}. Step = teacher forward (no grad) + student forward + loss + backward + "
            f"AdamW step. modelopt is used as `LogitsDistillationLoss(temperature=T, reduction=\"none\")(s, t)"
            f".mean()`, which is our loss's definition (per-token KL, mean over tokens, times T^2): the two "
            f"values differ by {r['loss_value_abs_diff']:.1e}, their gradients by at most "
            f"{r['loss_grad_max_abs_diff']:.1e}. Times: median of {r['reps']} interleaved repetitions after "
            f"{r['warmup']} warm-up ones, one process. Memory: each variant in a fresh process, extra memory "
            "of the step over a baseline holding models, batch and AdamW state.", "",
            "| | ours (`kd_loss`) | modelopt | ours / modelopt |",
            "|---|---:|---:|---:|",
            f"| step time, median (ms) | {1e3 * r['median_step_s']['ours']:.0f} | "
            f"{1e3 * r['median_step_s']['modelopt']:.0f} | {r['time_ratio']:.2f} |",
            f"| loss forward + backward alone, median (ms) | {1e3 * r['median_loss_fwd_bwd_s']['ours']:.0f} | "
            f"{1e3 * r['median_loss_fwd_bwd_s']['modelopt']:.0f} | {r['loss_time_ratio']:.2f} |",
            f"| peak extra memory, RSS (MiB) | {r['peak_rss_extra']['ours'] / MiB:.0f} | "
            f"{r['peak_rss_extra']['modelopt'] / MiB:.0f} | {r['rss_ratio']:.2f} |",
            f"| peak extra memory, torch allocator (MiB) | {r['peak_torch_extra']['ours'] / MiB:.0f} | "
            f"{r['peak_torch_extra']['modelopt'] / MiB:.0f} | {r['torch_ratio']:.2f} |",
            "",
        ]
    if "kdmem" in res:
        r = res["kdmem"]
        lines += [
            f"### KD loss peak memory at vocab {r['vocab']}: chunked vs naive", "",
            f"Forward + backward of the forward-KL loss on fp32 logits [{r['tokens']}, {r['vocab']}] "
            f"(one such tensor is {r['tensor_bytes'] / GiB:.2f} GiB; the inputs, student and teacher, are "
            "not counted). Each row in a fresh process. "
            f"Loss values agree across rows: {'yes' if r['values_agree'] else 'NO'}.", "",
            "| loss | chunk (tokens) | extra RSS (GiB) | in logit tensors | vs naive | torch allocator (GiB) | vs naive | time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in r["rows"]:
            name = "naive `kd_loss_reference`" if row["variant"] == "reference" else "ours `kd_loss`"
            if row.get("chunk_is_default") and row["variant"] == "ours":
                name += " (default chunk)"
            te, tr = row["torch_extra"], row.get("torch_ratio_vs_naive")
            te_s = "-" if te is None else f"{te / GiB:.2f}"
            tr_s = "-" if tr is None else f"{tr:.2f}"
            lines.append(
                f"| {name} | {row['chunk'] or '-'} | {row['rss_extra'] / GiB:.2f} | "
                f"{row['rss_extra'] / r['tensor_bytes']:.2f} | {row['rss_ratio_vs_naive']:.2f} | "
                f"{te_s} | {tr_s} | {row['seconds']:.1f} |")
        lines.append("")
    if "quality" in res:
        r = res["quality"]
        c = r["config"]
        runs = r["runs"]
        lines += [
            "### Pruned + distilled vs random init + distilled (shipped teacher)", "",
            f"Teacher: {r['teacher_arch']} ({r['teacher_origin']}). Student: {r['student_arch']} "
            f"({100 * r['param_fraction']:.1f}% of the teacher's parameters), pruned with the `prune` stage "
            f"({', '.join(f'{k}={v}' for k, v in PRUNE_TARGETS.items())}) or built from random init "
            f"(`build_model(arch, seed=...)`). Both distilled with the `distill` stage for {c['max_steps']} steps "
            f"x {c['global_batch_size']} x {c['seq_length']} tokens ({runs['pruned']['tokens']:,} tokens), "
            f"forward KL, T=1, lr {c['lr']} (warmup {c['warmup_steps']}, cosine). Validation loss: "
            f"`validation_loss` (next-token cross-entropy, nats) on {r['val_rows']} rows of the default "
            f"corpus validation split ({r['val_tokens_scored']:,} scored tokens).", "",
            "| model | params | val loss before distillation | val loss after |",
            "|---|---:|---:|---:|",
            f"| teacher | {r['teacher_arch'].split('(')[-1].rstrip(')')} | {r['teacher_loss']:.3f} | - |",
            f"| pruned student | {r['student_arch'].split('(')[-1].rstrip(')')} | {runs['pruned']['before']:.3f} | "
            f"{runs['pruned']['after']:.3f} |",
            f"| random-init student | same | {runs['random_init']['before']:.3f} | "
            f"{runs['random_init']['after']:.3f} |",
            f"| unigram baseline | - | {r['unigram_loss']:.3f} | - |",
            "",
            f"Wall time: prune {r['prune_seconds']} s, distillation {runs['pruned']['seconds']} s (pruned) and "
            f"{runs['random_init']['seconds']} s (random init); part total {r['seconds']} s.",
            "",
        ]
    return "\n".join(lines)


# =========================================================================== main
def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes and few steps (a smoke run, ~2 min)")
    p.add_argument("--parts", default="step,kdmem,quality", help="comma-separated: step, kdmem, quality")
    p.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: steadier timings on a shared machine)")
    p.add_argument("--work-dir", default=str(ROOT / "outputs" / "bench_distill"))
    p.add_argument("--temperature", type=float, default=1.0)
    g = p.add_argument_group("step")
    g.add_argument("--step-batch", type=int, default=None, help="rows per batch (default 4; quick 2)")
    g.add_argument("--step-seq", type=int, default=256, help="tokens per row (packed corpus length)")
    g.add_argument("--step-reps", type=int, default=None, help="timed repetitions (default 10; quick 3)")
    g.add_argument("--step-warmup", type=int, default=2)
    g = p.add_argument_group("kdmem")
    g.add_argument("--kd-tokens", type=int, default=None, help="tokens (default 2048; quick 256)")
    g.add_argument("--kd-vocab", type=int, default=131072)
    g.add_argument("--kd-chunks", default="default,256,1024",
                   help="chunk_tokens values of ours to measure ('default': kd_loss's own, about 4M logits)")
    g.add_argument("--kd-torch-peak", action="store_true",
                   help="also profile torch allocator peaks (slow and memory-hungry at this size)")
    g = p.add_argument_group("quality")
    g.add_argument("--teacher", default=None, help="teacher checkpoint (default: the shipped teacher)")
    g.add_argument("--steps", type=int, default=None, help="distillation steps per student (default 60; quick 10)")
    g.add_argument("--batch", type=int, default=4)
    g.add_argument("--seq", type=int, default=256)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--calib-samples", type=int, default=None, help="pruning calibration rows (default 16; quick 8)")
    g.add_argument("--val-rows", type=int, default=None, help="validation rows (default all; quick 8)")
    g.add_argument("--seed", type=int, default=0)
    # internal: fresh-process workers
    p.add_argument("--worker", choices=["step-mem", "kd-mem"], help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--tokens", type=int, help=argparse.SUPPRESS)
    p.add_argument("--vocab", type=int, help=argparse.SUPPRESS)
    p.add_argument("--chunk", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--torch-peak", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    quick = args.quick
    defaults = {"step_batch": 2 if quick else 4, "step_reps": 3 if quick else 10, "kd_tokens": 256 if quick else 2048,
                "steps": 10 if quick else 60, "calib_samples": 8 if quick else 16, "val_rows": 8 if quick else 0}
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    args.kd_chunks = [0 if c.strip() == "default" else int(c) for c in str(args.kd_chunks).split(",") if c.strip()]
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        out = worker_step_mem(args) if args.worker == "step-mem" else worker_kd_mem(args)
        print(json.dumps(out))
        return
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = set(parts) - {"step", "kdmem", "quality"}
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}")
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    command = "python scripts/bench_distill.py " + " ".join(argv if argv is not None else sys.argv[1:])
    res: dict[str, Any] = {"command": command.strip(), "machine": machine(), "threads": args.threads,
                           "versions": versions(), "quick": args.quick}
    stem = "results-" + "-".join(p for p in ("step", "kdmem", "quality") if p in parts)
    t0 = time.perf_counter()
    for part, fn in (("step", bench_step), ("kdmem", bench_kdmem), ("quality", bench_quality)):
        if part in parts:
            t = time.perf_counter()
            res[part] = fn(args)
            print(f"[bench_distill] {part} done in {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
            (work / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    res["total_seconds"] = round(time.perf_counter() - t0, 1)
    (work / f"{stem}.json").write_text(json.dumps(res, indent=1, default=str))
    md = markdown(res, res["command"])
    (work / f"{stem}.md").write_text(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
