"""Findings, tables and the benchmark panel for a plain decoder teacher (SmolLM2, Llama, ...).

The claims tested are the Minitron papers' (arXiv 2407.14679, 2408.11796, 2504.11409): width
pruning beats depth pruning after distillation (while depth gives the larger speed-up), KL
layer importance is a good depth criterion, depth is the most sensitive single axis, and a
pruned + distilled student beats the same shape trained from random initialisation on the same
tokens, retaining most of the teacher's benchmark average. Every verdict is computed from the
measured numbers with the noise rule of :mod:`.report`; benchmark noise is lm-eval's standard
error (the documents are a sample), loss noise the spread over distillation seeds.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Optional

from .report import Stats, loss_stats, order, shown_path, speed_order, speed_ratio, tokens_to_match, verdict

#: Chance level of each multiple-choice task's reported metric (1 / choices; LAMBADA is open-ended).
CHANCE = {"hellaswag": 0.25, "arc_easy": 0.25, "arc_challenge": 0.25, "openbookqa": 0.25, "sciq": 0.25,
          "piqa": 0.5, "winogrande": 0.5, "copa": 0.5, "boolq_notitle": 0.5, "social_iqa": 1 / 3,
          "commonsense_qa": 0.2, "lambada_openai_flat": 0.0}
#: The paper's retained share of the teacher's benchmark average (Nemotron-H 8B -> 4B, 380B tokens).
PAPER_RETAINED = 0.96


def primary_metric(task: str) -> str:
    from ..evaluate.offline_tasks import OFFLINE_TASKS

    return OFFLINE_TASKS[task].metric if task in OFFLINE_TASKS else "acc"


def benchmark_average(scores: Optional[dict[str, dict[str, float]]], tasks: list[str]) -> Optional[Stats]:
    """Mean of the tasks' primary metrics; ``std`` is its standard error (from lm-eval's per-task ones)."""
    if not scores or any(task not in scores for task in tasks) or not tasks:
        return None
    values = [scores[t][primary_metric(t)] for t in tasks]
    errors = [scores[t].get(f"{primary_metric(t)}_stderr", 0.0) or 0.0 for t in tasks]
    docs = sum(int(scores[t].get("num_samples", 0)) for t in tasks)
    return Stats(statistics.fmean(values), math.sqrt(sum(e * e for e in errors)) / len(tasks), docs)


def distilled_benchmarks(results: dict[str, Any], variant: str, long_run: bool = False) -> Optional[Stats]:
    """A variant's benchmark average after distillation, over its benchmarked seeds (or its long run)."""
    tasks = list(results["settings"]["benchmarks"])
    runs = [r for r in results["runs"] if r["variant"] == variant and r.get("benchmarks")
            and ("curve" in r) == long_run]
    averages = [a for a in (benchmark_average(r["benchmarks"], tasks) for r in runs) if a]
    if not averages:
        return None
    spread = statistics.stdev(a.mean for a in averages) if len(averages) > 1 else 0.0
    return Stats(statistics.fmean(a.mean for a in averages), max(spread, statistics.fmean(a.std for a in averages)),
                 averages[0].n)


def chance_average(tasks: list[str]) -> float:
    return statistics.fmean(CHANCE.get(t, 0.0) for t in tasks)


def retained(student: Optional[Stats], teacher: Optional[Stats], floor: float = 0.0) -> Optional[float]:
    """``(student - floor) / (teacher - floor)``: the share of the teacher's score (above ``floor``) kept."""
    if student is None or teacher is None or teacher.mean <= floor:
        return None
    return (student.mean - floor) / (teacher.mean - floor)


def higher_is_better(a: Optional[Stats], b: Optional[Stats]) -> int:
    """-1 if ``a`` is clearly higher (better), 1 if clearly lower, 0 within noise (or missing)."""
    if a is None or b is None:
        return 0
    return order(Stats(-a.mean, a.std, a.n), Stats(-b.mean, b.std, b.n))


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{x:.1%}"


def _bench(s: Optional[Stats]) -> str:
    return "-" if s is None else f"{s.mean:.3f} ± {s.std:.3f}"


def _worst(verdicts: list[str]) -> str:
    if "DISAGREES" in verdicts:
        return "DISAGREES"
    return "inconclusive (within noise)" if any(v.startswith("inconclusive") for v in verdicts) else "agrees"


def decoder_findings(results: dict[str, Any]) -> list[dict[str, str]]:
    runs, variants = results["runs"], results["variants"]
    tasks = list(results["settings"].get("benchmarks") or {})
    s = {name: loss_stats(runs, name) for name in variants}
    b = {name: distilled_benchmarks(results, name) for name in variants}
    teacher = benchmark_average(results.get("teacher_benchmarks"), tasks)
    speed = {name: speed_ratio(results, name) for name in variants}
    ttft = {name: speed_ratio(results, name, "ttft_ratio") for name in variants}
    twin = next(n for n, rec in variants.items() if rec["random_init"])
    ref = results["pruned_reference"]
    rows: list[dict[str, str]] = []

    def add(number: str, question: str, paper: str, here: str, verdicts: list[str]) -> None:
        rows.append({"finding": number, "question": question, "paper": paper, "here": here,
                     "verdict": _worst(verdicts)})

    add("1", "width vs depth (KL), equal non-embedding parameters: held-out loss after distillation",
        "width wins after distillation (Minitron; Minitron-SSM Table 1)",
        f"loss width {s[ref]} vs depth {s['depth-kl']} nats (zero-shot {variants[ref]['zero_shot_loss']:.3f} vs "
        f"{variants['depth-kl']['zero_shot_loss']:.3f})", [verdict(-1, order(s[ref], s["depth-kl"]))])
    if tasks:
        add("2", "width vs depth (KL): benchmark average after distillation",
            "width keeps more accuracy", f"average width {_bench(b[ref])} vs depth {_bench(b['depth-kl'])}",
            [verdict(-1, higher_is_better(b[ref], b["depth-kl"]))])
    add("3", "depth vs width: decode throughput and time to first token (one run, interleaved)",
        "depth pruning gives the larger speed-up (Minitron-SSM Table 1)",
        f"throughput x{speed['depth-kl'] or 0:.2f} (depth) vs x{speed[ref] or 0:.2f} (width); TTFT "
        f"x{ttft['depth-kl'] or 0:.2f} vs x{ttft[ref] or 0:.2f} of the teacher's",
        [verdict(-1, speed_order(speed["depth-kl"], speed[ref]))])
    same_layers = variants["depth-kl"]["kept_layers"] == variants["depth-cosine"]["kept_layers"]
    kl_vs_cos = order(s["depth-kl"], s["depth-cosine"])
    add("4", "KL-divergence vs cosine layer importance (depth-only)",
        "the paper ranks layers by KL divergence; KL should be at least as good",
        f"dropped layers (1-based) KL {variants['depth-kl']['dropped_layers']} vs cosine "
        f"{variants['depth-cosine']['dropped_layers']}"
        + (" (identical)" if same_layers else "")
        + f"; zero-shot loss {variants['depth-kl']['zero_shot_loss']:.3f} vs "
          f"{variants['depth-cosine']['zero_shot_loss']:.3f}; distilled {s['depth-kl']} vs {s['depth-cosine']}"
        + (f"; benchmarks {_bench(b['depth-kl'])} vs {_bench(b['depth-cosine'])}" if tasks else ""),
        ["agrees" if same_layers or kl_vs_cos < 0 else verdict(-1, kl_vs_cos)])
    singles = [n for n in ("ffn-only", "hidden-only") if n in variants]
    add("5", "single axes at equal size: which costs most after distillation",
        "depth is the most sensitive axis; FFN and embedding (hidden) matter less (Minitron-SSM Table 1, 3)",
        "distilled loss " + ", ".join(f"{n} {s[n]}" for n in ["depth-kl", *singles])
        + "; zero-shot " + ", ".join(f"{n} {variants[n]['zero_shot_loss']:.3f}" for n in ["depth-kl", *singles]),
        [verdict(1, order(s["depth-kl"], s[n])) for n in singles])
    match = tokens_to_match(results)
    reach = (f"reaches the pruned student's loss after {match['ratio']:.1f}x the tokens" if match and match["ratio"]
             else f"does not reach it within {match.get('lower_bound_ratio', 0):.0f}x the tokens (lower bound)"
             if match else "")
    add("6", "pruned + distilled vs the same shape from random init, same tokens: held-out loss",
        "pruning + distillation saves up to 40x training tokens",
        f"loss {s[ref]} vs random init {s[twin]}" + (f"; random init {reach}" if reach else ""),
        [verdict(-1, order(s[ref], s[twin]))])
    if tasks:
        add("7", "pruned + distilled vs random init, same tokens: benchmark average",
            "the pruned student keeps far more accuracy", f"average {_bench(b[ref])} vs random init {_bench(b[twin])}"
            + (f" (random init after {results['settings']['match_factor']}x the tokens: {_bench(b_long)})"
               if (b_long := distilled_benchmarks(results, twin, long_run=True)) else ""),
            [verdict(-1, higher_is_better(b[ref], b[twin]))])
    if tasks and teacher:
        share, twin_share = retained(b[ref], teacher), retained(b[twin], teacher)
        floor = chance_average(tasks)
        noise = b[ref].std / teacher.mean if b[ref] and teacher.mean > 0 else 0.0
        kept = ("inconclusive (no benchmark signal)" if share is None else "agrees" if share >= PAPER_RETAINED
                else "inconclusive (within noise)" if share + 2 * noise >= PAPER_RETAINED else "DISAGREES")
        # A share above chance means something only when the teacher itself is clearly above chance.
        above = teacher.mean - floor > 2 * teacher.std

        def over_chance(x: Optional[Stats]) -> str:
            return _pct(retained(x, teacher, floor)) if above else "- (the teacher is within noise of chance)"

        add("8", "retained share of the teacher's benchmark average (width student, after distillation)",
            f"> {PAPER_RETAINED:.0%} retained at 2x compression, after 380B distillation tokens",
            f"width {_pct(share)} (above chance: {over_chance(b[ref])}) vs random-init twin {_pct(twin_share)} "
            f"(above chance: {over_chance(b[twin])}); teacher {_bench(teacher)}, chance {floor:.3f}; "
            f"{results['tokens_per_run']:,} distillation tokens", [kept])
    return rows


def decoder_markdown(results: dict[str, Any], command: str, figure: str, title: str = "") -> str:
    st, variants, runs = results["settings"], results["variants"], results["runs"]
    tasks = list(st.get("benchmarks") or {})
    teacher = benchmark_average(results.get("teacher_benchmarks"), tasks)
    floor = chance_average(tasks) if tasks else 0.0
    lines = [
        f"# {title or 'Compressing a pretrained decoder: the paper claims on real benchmarks'}", "",
        f"Command: `{command}`  ", f"Machine: {results.get('machine', '?')}, torch {results['torch']}  ",
        f"Wall time: {results['seconds']:.0f} s ({results['seconds'] / 3600:.2f} h)", "",
        f"Teacher: {results['teacher']} (`{shown_path(results['teacher_path'])}`): held-out loss "
        f"{results['teacher_val_loss']:.4f} nats/token on {results['val_tokens']:,} tokens"
        + (f", benchmark average {_bench(teacher)}" if teacher else "") + ". Every student has about half of the "
        f"teacher's non-embedding parameters ({results['teacher_block_params'] / 1e6:.2f}M), is pruned from one set "
        f"of importance scores ({st['calibration_samples']} x {st['calibration_seq_length']} calibration tokens, "
        f"KL layer scores over {st['layer_importance_samples']} samples) and distilled (forward KL, the teacher "
        f"frozen) for {st['steps']} steps x {st['global_batch_size']} x {st['seq_length']} = "
        f"{results['tokens_per_run']:,} tokens at peak lr {st['lr']} (random init: "
        f"{st.get('random_init_lr') or st['lr']}), over up to {st['num_seeds']} seed(s) of data order. Loss: "
        "next-token cross-entropy on the corpus's held-out split; ± over seeds is their standard deviation, "
        "± on benchmarks lm-eval's standard error.", "",
        "## Findings", "", "| # | question | paper | here | verdict |", "|---|---|---|---|---|",
        *(f"| {f['finding']} | {f['question']} | {f['paper']} | {f['here']} | **{f['verdict']}** |"
          for f in results["findings"]), "",
        "## Students (the paper's Table 3: each axis alone, zero-shot and after distillation)", "",
        "| student | shape | params (non-embedding, share) | zero-shot loss | zero-shot bench avg | distilled loss "
        "(seeds) | distilled bench avg | retained | throughput | TTFT |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rec in variants.items():
        zero = benchmark_average(rec.get("zero_shot_benchmarks"), tasks)
        dist = distilled_benchmarks(results, name)
        thr, ttft = speed_ratio(results, name), speed_ratio(results, name, "ttft_ratio")
        note = "" if rec.get("matched", True) else " (not matched)"
        lines.append(
            f"| {name}: {rec['description']}{note} | {rec['arch']} | {rec['params'] / 1e6:.2f}M "
            f"({rec['block_params'] / 1e6:.2f}M, {rec['block_fraction']:.1%}) | {rec['zero_shot_loss']:.3f} | "
            f"{_bench(zero)} | {loss_stats(runs, name)} ({loss_stats(runs, name).n}) | {_bench(dist)} | "
            f"{_pct(retained(dist, teacher))} | " + (f"x{thr:.2f}" if thr else "-") + " | "
            + (f"x{ttft:.2f}" if ttft else "-") + " |")
    lines += ["", "Retained: the distilled benchmark average over the teacher's. Throughput: decode tokens/s over the "
              "teacher's; TTFT: time to first token over the teacher's (lower is faster). The random-init student "
              "has the width student's shape and speed.", ""]
    if tasks:
        lines += benchmark_table(results, tasks, floor)
    lines += tokens_to_match_lines(results)
    sp = results["speed"].get("settings", {})
    lines += [f"![students]({figure})", "",
              f"Speed: `compare_speed`, batch 1, {sp.get('input_len', st['speed_input_len'])} prompt tokens, "
              f"{sp.get('output_len', st['speed_output_len'])} generated, median of {st['speed_repeats']} interleaved "
              "repetitions, one torch thread, every model in one process after all training.", "",
              f"Wall time of this invocation: {results['seconds']:.0f} s; summed distillation time "
              f"{sum(r['train_seconds'] for r in runs):.0f} s and benchmark time "
              f"{sum(r.get('benchmark_seconds', 0) for r in runs):.0f} s over {len(runs)} runs in {st['workers']} "
              f"worker(s) ({results['cpu_count']} CPUs)."]
    return "\n".join(lines) + "\n"


def benchmark_table(results: dict[str, Any], tasks: list[str], floor: float) -> list[str]:
    """Per-task scores: the teacher, every pruned student zero-shot, every student distilled (seed 0)."""
    header = "| model | " + " | ".join(f"{t} ({primary_metric(t)}, n={results['settings']['benchmarks'][t]})"
                                     for t in tasks) + " | average |"
    lines = ["## Benchmarks per task", "", "lm-eval's own task definitions on the offline data "
             "(`evaluate/offline_tasks.py`), each on its first n documents; value ± standard error. Chance "
             f"average: {floor:.3f}.", "", header, "|---|" + "---:|" * (len(tasks) + 1)]

    def row(label: str, scores: Optional[dict[str, dict[str, float]]]) -> None:
        if not scores:
            return
        cells = [f"{scores[t][primary_metric(t)]:.3f} ± {scores[t].get(primary_metric(t) + '_stderr', 0):.3f}"
                 if t in scores else "-" for t in tasks]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_bench(benchmark_average(scores, tasks))} |")

    row("teacher", results.get("teacher_benchmarks"))
    for name, rec in results["variants"].items():
        row(f"{name}, zero-shot", rec.get("zero_shot_benchmarks"))
    for r in sorted(results["runs"], key=lambda r: (r["variant"], "curve" in r, r["seed"])):
        label = f"{r['variant']}, distilled {r['tokens']:,} tokens" + (" (long run)" if "curve" in r else
                                                                       f", seed {r['seed']}")
        row(label, r.get("benchmarks"))
    return lines + [""]


def tokens_to_match_lines(results: dict[str, Any]) -> list[str]:
    match = tokens_to_match(results)
    if not match:
        return []
    st = results["settings"]
    return ["## Tokens to match", "", f"The random-init student trained for up to {st['match_factor']}x the budget "
            "(one run, seed 0, one cosine schedule over the whole run, validated every "
            f"{st['steps']} steps) against the pruned + distilled width student's loss {match['target_loss']:.4f}:",
            "", "| tokens | multiple of the budget | held-out loss |", "|---:|---:|---:|",
            *(f"| {p['tokens']:,} | {p['tokens'] / match['budget_tokens']:.0f}x | {p['val_loss']:.4f} |"
              for p in match["curve"]), ""]


def plot_benchmarks(ax: Any, results: dict[str, Any]) -> None:
    """Benchmark average per student, zero-shot and distilled, against the teacher and chance."""
    tasks = list(results["settings"]["benchmarks"])
    names = list(results["variants"])
    zero = [benchmark_average(results["variants"][n].get("zero_shot_benchmarks"), tasks) for n in names]
    dist = [distilled_benchmarks(results, n) for n in names]
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [z.mean if z else 0 for z in zero], yerr=[z.std if z else 0 for z in zero],
           width=0.4, color="tab:red", alpha=0.6, label="zero-shot")
    ax.bar([i + 0.2 for i in x], [d.mean if d else 0 for d in dist], yerr=[d.std if d else 0 for d in dist],
           width=0.4, color="tab:blue", label="distilled")
    teacher = benchmark_average(results.get("teacher_benchmarks"), tasks)
    if teacher:
        ax.axhline(teacher.mean, color="k", ls="--", lw=1, label="teacher")
    ax.axhline(chance_average(tasks), color="grey", ls=":", lw=1, label="chance")
    ax.set_xticks(list(x), names, rotation=40, ha="right")
    ax.set_ylabel("benchmark average")
    ax.set_title("lm-eval average (± stderr)")
    ax.legend(fontsize=8)
