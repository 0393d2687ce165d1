#!/usr/bin/env python
"""Benchmark: what importance estimation costs over the plain forward passes it rides on.

For each model shape (random init: timing does not depend on the weights) it times, side by
side in one process and over several repetitions:

  plain       N batches of ``model(input_ids=batch, use_cache=False)`` under ``torch.no_grad``
  importance  ``estimate_importance(model, ids, layer_metrics=())`` on the same N batches
              (all activation scores: Mamba x/z/out_proj/FLAP, FFN, attention, embedding)
  +cosine     the same with ``layer_metrics=("cosine",)`` (one more hook per block)
  +kl         ``layer_metrics=("kl",)`` on the first ``--kl-batches`` batches only, against plain
              passes on those batches: KL needs one extra full forward pass per layer

The variants run in alternating order each repetition (plain first on even repetitions, last on
odd ones) so slow drift of a shared machine hits both; the reported ratio is the median of the
per-repetition ratios (paired), next to the medians of the raw times.

Peak memory is measured in a fresh subprocess per shape and variant: it builds the model and the
calibration ids, records its resident set (``VmRSS``), resets the kernel's RSS high-water mark
(``echo 5 > /proc/self/clear_refs``), runs ``--mem-batches`` batches of the variant and reads the
high-water mark (``VmHWM``). That is the peak resident memory *during the passes* (all CPU memory
of the process, torch tensors included, which tracemalloc would not see); "over loaded model" is
that peak minus the RSS before the passes. ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` is not
used: on Linux it survives fork+exec, so a child reports its parent's peak when that is higher.

    .venv/bin/python scripts/bench_importance.py                  # print the table
    .venv/bin/python scripts/bench_importance.py --write docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import cpu_name  # noqa: E402

from nemo_minitron.arch import HybridArch, preset  # noqa: E402

SECTION = "## Importance estimation overhead"
NOTES = """\
How to read it:

- *importance*: every activation score in one sweep (Mamba x/z/out_proj/FLAP, FFN, attention,
  embedding channels); *+cosine* adds the cosine layer score. Their ratio to the plain passes is
  the cost of the hooks. Each hook keeps only per-channel running sums, so the extra memory is
  temporaries of one batch's activations.
- *importance+kl*: KL layer importance costs one extra full forward pass per layer (skipping that
  layer) for every batch it runs on, so expect a ratio of about 1 + num_layers, plus the
  full-vocabulary log-softmax and KL for each of those passes. Its extra peak memory is those
  [batch, seq, vocab] float32 tensors (4 x 256 x 32000 x 4 B = 131 MB each; several are live at
  once). `prune_checkpoint` therefore runs it only on the first `layer_importance_samples`
  samples (default 64); `estimate_importance(kl_max_samples=...)` caps it likewise.
- Times are wall-clock on a shared machine. Compare the paired ratios and the raw repetitions,
  not single numbers.
"""
VARIANTS = ("plain", "importance", "importance+cosine", "importance+kl")


def shapes() -> dict[str, HybridArch]:
    tiny = preset("tiny")
    # Twice as deep and wide as the tiny teacher, same layer mix: 24 layers, hidden 512, 8 Mamba groups.
    medium = tiny.replace(pattern=tiny.pattern * 2, hidden_size=512, ffn_hidden_size=2048, mamba_num_heads=16,
                          mamba_head_dim=64, mamba_num_groups=8, mamba_state_dim=64, num_attention_heads=8,
                          num_query_groups=2, attention_head_dim=64)
    return {"tiny": tiny, "medium": medium}


def build(arch: HybridArch) -> torch.nn.Module:
    from nemo_minitron.models import build_model

    return build_model(arch, seed=0).eval()


def calibration(arch: HybridArch, batches: int, batch_size: int, seq_len: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, arch.vocab_size, (batches * batch_size, seq_len), generator=gen)


@torch.no_grad()
def run_variant(model: torch.nn.Module, ids: torch.Tensor, batch_size: int, variant: str) -> None:
    from nemo_minitron.prune import estimate_importance

    if variant == "plain":
        for start in range(0, ids.shape[0], batch_size):
            model(input_ids=ids[start:start + batch_size], use_cache=False).logits
    elif variant == "importance":
        estimate_importance(model, ids, batch_size=batch_size, layer_metrics=(), progress=False)
    elif variant == "importance+cosine":
        estimate_importance(model, ids, batch_size=batch_size, layer_metrics=("cosine",), progress=False)
    elif variant == "importance+kl":
        estimate_importance(model, ids, batch_size=batch_size, layer_metrics=("kl",), kl_max_samples=None,
                            progress=False)
    else:
        raise ValueError(variant)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def time_shape(arch: HybridArch, args: argparse.Namespace) -> dict[str, dict]:
    model = build(arch)
    ids = calibration(arch, args.batches, args.batch_size, args.seq_len)
    kl_ids = ids[:args.kl_batches * args.batch_size]
    run_variant(model, ids[:args.batch_size], args.batch_size, "plain")  # warm-up (allocator, kernels)
    run_variant(model, ids[:args.batch_size], args.batch_size, "importance")
    times: dict[str, list[float]] = {v: [] for v in ("plain", "importance", "importance+cosine",
                                                      "plain(kl batches)", "importance+kl")}
    for rep in range(args.reps):
        order = ["plain", "importance", "importance+cosine"]
        kl_order = ["plain(kl batches)", "importance+kl"]
        if rep % 2:
            order.reverse()
            kl_order.reverse()
        for variant in order:
            times[variant].append(timed(lambda: run_variant(model, ids, args.batch_size, variant)))
        if args.kl_batches > 0:
            for variant in kl_order:
                which = "plain" if variant.startswith("plain") else variant
                times[variant].append(timed(lambda: run_variant(model, kl_ids, args.batch_size, which)))
        print(f"  [{arch.describe()}] rep {rep + 1}/{args.reps}: "
              + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items() if v), file=sys.stderr, flush=True)

    def paired_ratio(variant: str, base: str) -> float:
        return statistics.median(a / b for a, b in zip(times[variant], times[base]))

    out = {
        "plain": {"batches": args.batches, "median_s": statistics.median(times["plain"]), "ratio": 1.0},
        "importance": {"batches": args.batches, "median_s": statistics.median(times["importance"]),
                       "ratio": paired_ratio("importance", "plain")},
        "importance+cosine": {"batches": args.batches, "median_s": statistics.median(times["importance+cosine"]),
                              "ratio": paired_ratio("importance+cosine", "plain")},
    }
    if args.kl_batches > 0:
        out["importance+kl"] = {
            "batches": args.kl_batches, "median_s": statistics.median(times["importance+kl"]),
            "plain_median_s": statistics.median(times["plain(kl batches)"]),
            "ratio": paired_ratio("importance+kl", "plain(kl batches)"),
        }
    out["_raw"] = times
    return out


# --------------------------------------------------------------------------- memory (subprocess)
def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def memory_child(shape: str, variant: str, args: argparse.Namespace) -> None:
    arch = shapes()[shape]
    model = build(arch)
    ids = calibration(arch, args.mem_batches, args.batch_size, args.seq_len)
    loaded = _status_kib("VmRSS")
    reset = _reset_peak_rss()
    run_variant(model, ids, args.batch_size, variant)
    print(json.dumps({"loaded_kib": loaded, "peak_kib": _status_kib("VmHWM"), "reset": reset}))


def measure_memory(shape: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    cmd = [sys.executable, __file__, "--_memory-child", shape, variant, "--batch-size", str(args.batch_size),
           "--seq-len", str(args.seq_len), "--mem-batches", str(args.mem_batches),
           "--threads", str(torch.get_num_threads())]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory child {shape}/{variant} failed:\n{result.stderr[-3000:]}")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    return {"peak_mib": data["peak_kib"] / 1024, "over_model_mib": (data["peak_kib"] - data["loaded_kib"]) / 1024,
            "reset": data["reset"]}


# --------------------------------------------------------------------------- report
def machine() -> str:
    cpu = cpu_name()
    import transformers

    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} (intra-op threads: {torch.get_num_threads()}), "
            f"transformers {transformers.__version__}, Python {platform.python_version()}, no GPU "
            f"(pure-PyTorch Mamba kernels)")


def table(results: dict[str, dict], archs: dict[str, HybridArch], memory: dict, args: argparse.Namespace) -> str:
    lines = [
        "| shape | variant | batches | median time (s) | ratio to plain (paired median) | peak RSS during passes (MiB) "
        "| peak RSS over loaded model (MiB) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for shape, res in results.items():
        label = f"{shape}: {archs[shape].describe()}"
        for variant in VARIANTS:
            if variant not in res:
                continue
            r = res[variant]
            mem = memory.get((shape, variant))
            mem_cols = (f"{mem['peak_mib']:.0f} | {mem['over_model_mib']:.0f}" if mem else "- | -")
            if mem and not mem["reset"]:
                mem_cols += " (peak includes model build: clear_refs unavailable)"
            time_col = f"{r['median_s']:.2f}"
            if variant == "importance+kl":
                time_col += f" (plain: {r['plain_median_s']:.2f})"
            lines.append(f"| {label} | {variant} | {r['batches']} | {time_col} | {r['ratio']:.2f}x | {mem_cols} |")
            label = ""
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    start = text.find(SECTION)
    if start == -1:
        text = text.rstrip("\n") + "\n\n" + body
    else:
        nxt = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + (text[nxt + 1:] if nxt != -1 else "")
    path.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shapes", default="tiny,medium", help="comma-separated: " + ", ".join(shapes()))
    parser.add_argument("--batches", type=int, default=16, help="calibration batches timed per variant")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--kl-batches", type=int, default=2, help="batches for the KL variant (0: skip)")
    parser.add_argument("--mem-batches", type=int, default=2, help="batches run in each memory subprocess")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--write", type=Path, help="replace the section in this Markdown file")
    parser.add_argument("--_memory-child", nargs=2, metavar=("SHAPE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args._memory_child:
        memory_child(*args._memory_child, args)
        return 0

    archs = {name: shapes()[name] for name in args.shapes.split(",")}
    load_before = os.getloadavg()
    started = time.perf_counter()
    results = {}
    for name, arch in archs.items():
        print(f"timing {name}: {arch.describe()}", file=sys.stderr, flush=True)
        results[name] = time_shape(arch, args)
    memory = {}
    if not args.no_memory:
        for name in archs:
            for variant in VARIANTS:
                print(f"memory {name}/{variant}", file=sys.stderr, flush=True)
                memory[(name, variant)] = measure_memory(name, variant, args)
    load_after = os.getloadavg()
    command = "python scripts/bench_importance.py " + " ".join(a for a in (argv if argv is not None else sys.argv[1:]))
    md = table(results, archs, memory, args)
    raw = {name: {k: [round(x, 3) for x in v] for k, v in res["_raw"].items()} for name, res in results.items()}
    body = "\n".join([
        SECTION,
        "",
        f"Command: `{command.strip()}`  ",
        f"Machine: {machine()}.  ",
        f"Settings: {args.batches} batches of {args.batch_size}x{args.seq_len} tokens per variant, {args.reps} "
        f"repetitions (alternating order), KL on {args.kl_batches} batches, "
        + ("memory not measured" if args.no_memory else
           f"memory from {args.mem_batches} batches in a fresh process per variant")
        + f". Random-init weights. Load average (1 min) {load_before[0]:.1f} before, "
        f"{load_after[0]:.1f} after; total {time.perf_counter() - started:.0f} s.",
        "",
        md,
        "",
        f"Raw times per repetition (s): `{json.dumps(raw)}`",
        "",
        NOTES,
    ])
    print(body)
    if args.write:
        write_section(args.write, body)
        print(f"wrote {args.write}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
