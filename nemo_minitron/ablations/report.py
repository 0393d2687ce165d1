"""Turn ablation runs into the findings table, the Markdown report and one figure.

Each finding compares measured numbers and states whether they agree with the paper; nothing
here knows the outcome in advance. Two means count as different only when their gap exceeds
the seeds' spread (sqrt of the summed variances) and 0.1 % of the loss; two decode speeds only
when they differ by more than :data:`SPEED_TIE`. This module holds the
shared machinery and the hybrid teacher's findings; a plain decoder's are in
:mod:`.decoder_report`.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

REL_TIE = 0.001  #: relative loss gap below which two students count as tied
#: Relative decode-throughput gap below which two students count as equally fast: on 2 shared CPU
#: cores the same model (depth-kl and depth-cosine keep the same layers) measured up to 13 % apart.
SPEED_TIE = 0.15


@dataclass(frozen=True)
class Stats:
    mean: float
    std: float
    n: int

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}" if self.n > 1 else f"{self.mean:.4f}"


def loss_stats(runs: list[dict[str, Any]], variant: str) -> Stats:
    losses = [r["val_loss"] for r in runs if r["variant"] == variant and "curve" not in r]
    if not losses:
        raise ValueError(f"no finished run of variant {variant!r}")
    return Stats(statistics.fmean(losses), statistics.stdev(losses) if len(losses) > 1 else 0.0, len(losses))


def order(a: Stats, b: Stats) -> int:
    """-1 if ``a`` is clearly lower, 1 if clearly higher, 0 if tied within noise."""
    gap = a.mean - b.mean
    noise = max(math.sqrt(a.std ** 2 + b.std ** 2), REL_TIE * abs(b.mean))
    return 0 if abs(gap) <= noise else (-1 if gap < 0 else 1)


def speed_order(a: Optional[float], b: Optional[float]) -> int:
    """-1 if throughput ``a`` is clearly higher (faster), 1 if clearly lower, 0 if within
    :data:`SPEED_TIE` of each other or either is unmeasured."""
    if not a or not b:
        return 0
    if max(a, b) / min(a, b) - 1 <= SPEED_TIE:
        return 0
    return -1 if a > b else 1


def verdict(expected: int, observed: int) -> str:
    """Compare the paper's expected order with the observed one (both -1/0/1)."""
    if observed == expected:
        return "agrees"
    if observed == 0:
        return "inconclusive (within noise)"
    return "DISAGREES"


def tokens_to_match(results: dict[str, Any]) -> dict[str, Any]:
    """When the random-init student's long run first reaches the pruned student's distilled loss."""
    long_runs = [r for r in results["runs"] if "curve" in r]
    if not long_runs:
        return {}
    target = loss_stats(results["runs"], results["pruned_reference"]).mean
    curve, budget = long_runs[0]["curve"], results["tokens_per_run"]
    hit = next((p for p in curve if p["val_loss"] <= target), None)
    longest = curve[-1]["tokens"] if curve else 0
    return {"target_loss": target, "curve": curve, "budget_tokens": budget,
            "tokens": hit["tokens"] if hit else None, "ratio": hit["tokens"] / budget if hit else None,
            "lower_bound_ratio": None if hit else longest / budget}


def speed_ratio(results: dict[str, Any], name: str, key: str = "throughput_ratio") -> Optional[float]:
    """Decode throughput (or, with ``key="ttft_ratio"``, time to first token) of ``name`` over the
    teacher's; a random-init student has its pruned twin's shape, hence its speed."""
    variants = results["variants"]
    if variants[name]["random_init"]:
        name = results["pruned_reference"]
    ratio = results["speed"]["ratios"].get(name)
    return ratio[key] if ratio else None


def findings(results: dict[str, Any]) -> list[dict[str, str]]:
    runs, variants = results["runs"], results["variants"]
    s = {name: loss_stats(runs, name) for name in variants}
    zero = {name: Stats(rec["zero_shot_loss"], 0.0, 1) for name, rec in variants.items()}
    speed = {name: speed_ratio(results, name) for name in variants}
    rows = []

    def add(number: str, question: str, paper: str, here: str, verdicts: list[str]) -> None:
        worst = "DISAGREES" if "DISAGREES" in verdicts else (
            "inconclusive (within noise)" if any(v.startswith("inconclusive") for v in verdicts) else "agrees")
        rows.append({"finding": number, "question": question, "paper": paper, "here": here, "verdict": worst})

    def faster(a: str, b: str) -> int:
        return speed_order(speed[a], speed[b])

    o = order(s["width"], s["depth-kl"])
    add("1", "width-only vs depth-only (equal block parameters)",
        "width wins on loss after KD; depth gives the larger speed-up",
        f"distilled loss width {s['width']} vs depth {s['depth-kl']}; throughput x{speed['width']:.2f} vs "
        f"x{speed['depth-kl']:.2f}", [verdict(-1, o), verdict(-1, faster("depth-kl", "width"))])
    add("2", "Mamba heads vs head channels, each alone",
        "pruning heads wins on loss, latency and throughput (Fig. 7)",
        f"distilled loss heads {s['mamba-heads']} vs channels {s['mamba-channels']}; zero-shot "
        f"{zero['mamba-heads'].mean:.4f} vs {zero['mamba-channels'].mean:.4f}; throughput "
        f"x{speed['mamba-heads']:.2f} vs x{speed['mamba-channels']:.2f}",
        [verdict(-1, order(s["mamba-heads"], s["mamba-channels"])),
         verdict(-1, faster("mamba-heads", "mamba-channels"))])
    metric_names = {"mamba-heads": "W_x", "mamba-heads-z": "W_z", "mamba-heads-out_proj": "out_proj"}
    best_zero = min(metric_names, key=lambda n: zero[n].mean)
    best_kd = min(metric_names, key=lambda n: s[n].mean)
    add("3", "Mamba scores from W_x vs W_z vs out_proj input",
        "W_x usually gives the best zero-shot loss (Table 2)",
        "zero-shot " + ", ".join(f"{metric_names[n]} {zero[n].mean:.4f}" for n in metric_names)
        + "; distilled " + ", ".join(f"{metric_names[n]} {s[n]}" for n in metric_names)
        + f"; best: {metric_names[best_zero]} zero-shot, {metric_names[best_kd]} distilled",
        [verdict(-1, max(order(zero["mamba-heads"], zero[n]) for n in metric_names if n != "mamba-heads")),
         verdict(-1, max(order(s["mamba-heads"], s[n]) for n in metric_names if n != "mamba-heads"))])
    add("4", "L2 activation importance vs FLAP (Mamba heads)",
        "mixed before KD; on par after KD, no clear advantage (Table 3)",
        f"zero-shot L2 {zero['mamba-heads'].mean:.4f} vs FLAP {zero['mamba-heads-flap'].mean:.4f}; distilled "
        f"L2 {s['mamba-heads']} vs FLAP {s['mamba-heads-flap']}",
        [verdict(0, order(s["mamba-heads"], s["mamba-heads-flap"]))])
    same_layers = variants["depth-kl"]["kept_layers"] == variants["depth-cosine"]["kept_layers"]
    add("5", "KL-divergence vs cosine layer importance (depth-only)",
        "the paper ranks layers by KL divergence (no head-to-head given); KL should be at least as good",
        f"kept layers KL {variants['depth-kl']['kept_layers']} vs cosine {variants['depth-cosine']['kept_layers']}"
        + (" (identical)" if same_layers else "")
        + f"; distilled loss KL {s['depth-kl']} vs cosine {s['depth-cosine']}",
        ["agrees" if same_layers or order(s["depth-kl"], s["depth-cosine"]) <= 0 else "DISAGREES"])
    match = tokens_to_match(results)
    random_name = next(n for n, rec in variants.items() if rec["random_init"])
    ratio_text = (f"reaches it after {match['ratio']:.1f}x the tokens" if match and match["ratio"]
                  else f"does not reach it within {match.get('lower_bound_ratio', 0):.0f}x the tokens" if match else "")
    add("6", "pruned + distilled vs random init + distilled (same shape and tokens)",
        "pruning saves up to 40x training tokens",
        f"distilled loss pruned {s[results['pruned_reference']]} vs random init {s[random_name]}; "
        f"the random-init student {ratio_text}",
        [verdict(-1, order(s[results["pruned_reference"]], s[random_name]))])
    return rows


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f}M"


def teacher_label(teacher_path: str) -> str:
    """How the report's title names the teacher: the shipped one by name, any other by its folder."""
    from ..data.shipped_teacher import SHIPPED_TEACHER_DIR

    path = Path(teacher_path).resolve()
    return "the shipped teacher" if path == SHIPPED_TEACHER_DIR else f"`{path.name}`"


def shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies under it (no machine's home in the docs)."""
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def to_markdown(results: dict[str, Any], command: str, figure: str = "ablations.png") -> str:
    st, variants, runs = results["settings"], results["variants"], results["runs"]
    lines = [
        f"# Reproducing the paper's ablations on {teacher_label(results['teacher_path'])}", "",
        f"Command: `{command}`", "",
        f"Teacher: {results['teacher']} (`{shown_path(results['teacher_path'])}`), validation loss "
        f"{results['teacher_val_loss']:.4f} nats on {results['val_tokens']:,} held-out tokens. Every student is "
        "pruned from the same saved importance scores "
        f"({st['calibration_samples']} x {st['calibration_seq_length']} calibration tokens, KL over "
        f"{st['layer_importance_samples']} samples) and distilled (forward KL) for {st['steps']} steps x "
        f"{st['global_batch_size']} x {st['seq_length']} = {results['tokens_per_run']:,} tokens, lr {st['lr']}, "
        f"over {st['num_seeds']} seed(s) (data order; for random init also the initialisation). Loss = next-token "
        "cross-entropy on the held-out split; ± is the standard deviation over seeds.", "",
        "Parameters are matched on the blocks (everything but the embedding and LM head): on this teacher "
        f"the embedding and LM head are {1 - results['teacher_block_params'] / results['teacher_params']:.0%} of "
        "all parameters, and the ablations compare ways of pruning the blocks (variants.py).", "",
        "## Findings", "",
        "| # | question | paper | here | verdict |", "|---|---|---|---|---|",
        *(f"| {f['finding']} | {f['question']} | {f['paper']} | {f['here']} | **{f['verdict']}** |"
          for f in results["findings"]), "",
        "## Students", "",
        "| student | shape | block params | zero-shot loss | distilled loss | decode throughput vs teacher |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for name, rec in variants.items():
        ratio = speed_ratio(results, name)
        lines.append(f"| {name}: {rec['description']} | {rec['arch']} | {_fmt_params(rec['block_params'])} "
                     f"({rec['block_fraction']:.0%}) | {rec['zero_shot_loss']:.4f} | {loss_stats(runs, name)} | "
                     + (f"x{ratio:.2f}" if ratio else "-") + " |")
    sp = results["speed"]["settings"] if "settings" in results["speed"] else {}
    lines += ["", f"Decode throughput: `compare_speed`, batch 1, {st['speed_input_len']} input / "
              f"{st['speed_output_len']} output tokens, median of {st['speed_repeats']} interleaved repetitions, one "
              "torch thread, every model in the same process after all training"
              + (f" ({json.dumps(sp)})" if sp else "") + ". The random-init student has the width student's shape.",
              "", "## Tokens to match", ""]
    match = tokens_to_match(results)
    if match:
        lines += [f"The random-init student trained for up to {st['match_factor']}x the budget (one run, seed 0, "
                  "cosine schedule over the whole run, validated every "
                  f"{st['steps']} steps) against the pruned student's distilled loss {match['target_loss']:.4f}:", "",
                  "| tokens | multiple of the budget | val loss |", "|---:|---:|---:|",
                  *(f"| {p['tokens']:,} | {p['tokens'] / match['budget_tokens']:.0f}x | {p['val_loss']:.4f} |"
                    for p in match["curve"]), ""]
    lines += [f"![ablations]({figure})", "",
              f"Wall time of this invocation: {results['seconds']:.0f} s; summed distillation time "
              f"{sum(r['train_seconds'] for r in runs):.0f} s over {len(runs)} runs in {st['workers']} worker(s) "
              f"(torch {results['torch']}, {results['cpu_count']} CPUs)."]
    return "\n".join(lines) + "\n"


def to_png(results: dict[str, Any]) -> bytes:
    """Loss per student, speed, tokens to match (and, when benchmarked, the benchmark averages)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants, runs = results["variants"], results["runs"]
    names = list(variants)
    stats = [loss_stats(runs, n) for n in names]
    with_benchmarks = bool(results.get("teacher_benchmarks"))
    fig, axes = plt.subplots(1, 4 if with_benchmarks else 3, figsize=(22 if with_benchmarks else 17, 5))
    x = range(len(names))
    axes[0].bar(x, [s.mean for s in stats], yerr=[s.std for s in stats], color="tab:blue", label="distilled")
    axes[0].scatter(x, [variants[n]["zero_shot_loss"] for n in names], color="tab:red", marker="_", s=300,
                    label="zero-shot (before KD)", zorder=3)
    axes[0].axhline(results["teacher_val_loss"], color="k", ls="--", lw=1, label="teacher")
    # Zoom on the pruned students (their gaps are hundredths of a nat); taller bars are clipped
    # and labelled with their value.
    pruned_values = [v for n, st in zip(names, stats) if not variants[n]["random_init"]
                     for v in (st.mean + st.std, variants[n]["zero_shot_loss"])]
    low = min(min(s.mean - s.std for s in stats), results["teacher_val_loss"])
    top = max(pruned_values) + 0.25 * (max(pruned_values) - low)
    axes[0].set_ylim(low - 0.25 * (top - low), top)
    for i, (n, st) in enumerate(zip(names, stats)):
        if st.mean > top:
            axes[0].text(i, top, f"{st.mean:.2f}", ha="center", va="top", fontsize=8, color="white")
    axes[0].set_xticks(list(x), names, rotation=40, ha="right")
    axes[0].set_ylabel("validation loss (nats)")
    axes[0].set_title("loss per student (mean ± std over seeds)")
    axes[0].legend(fontsize=8)
    pruned = [n for n in names if not variants[n]["random_init"]]
    axes[1].bar([i - 0.2 for i in range(len(pruned))], [speed_ratio(results, n) or 0 for n in pruned], width=0.4,
                color="tab:green", label="decode throughput")
    axes[1].bar([i + 0.2 for i in range(len(pruned))], [1 / (speed_ratio(results, n, "ttft_ratio") or 1)
                                                         for n in pruned], width=0.4, color="tab:olive",
                label="1 / time to first token")
    axes[1].axhline(1.0, color="k", ls="--", lw=1)
    axes[1].set_xticks(range(len(pruned)), pruned, rotation=40, ha="right")
    axes[1].set_ylabel("speed-up over the teacher")
    axes[1].set_title("speed (same run)")
    axes[1].legend(fontsize=8)
    if with_benchmarks:
        from .decoder_report import plot_benchmarks

        plot_benchmarks(axes[3], results)
    match = tokens_to_match(results)
    if match:
        axes[2].plot([p["tokens"] for p in match["curve"]], [p["val_loss"] for p in match["curve"]], "o-",
                     label="random init, long run")
        axes[2].axhline(match["target_loss"], color="tab:orange", ls="--", label="pruned + distilled (1x budget)")
        axes[2].axvline(match["budget_tokens"], color="grey", ls=":", lw=1)
        axes[2].set_xlabel("distillation tokens")
        axes[2].set_ylabel("validation loss (nats)")
        axes[2].set_title("tokens for random init to match pruning")
        axes[2].legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


@dataclass(frozen=True)
class ReportFiles:
    """Where a report goes: the Markdown, the figure and the JSON (the JSON also to ``docs_dir`` when asked)."""

    markdown: str = "results.md"
    figure: str = "ablations.png"
    json: str = "results.json"
    json_in_docs: bool = False
    title: str = field(default="")  #: the Markdown's first heading (default: by the kind of teacher)

    @classmethod
    def named(cls, stem: str, title: str = "") -> "ReportFiles":
        """``stem.md``, ``stem.png`` and ``stem.json``, all three also in the docs folder."""
        return cls(f"{stem}.md", f"{stem}.png", f"{stem}.json", json_in_docs=True, title=title)


def write_report(results: dict[str, Any], out: Path, docs_dir: Optional[Path] = None,
                 command: Optional[str] = None, files: Optional[ReportFiles] = None) -> dict[str, Any]:
    """Write the JSON, Markdown and figure (default: results.json / results.md / ablations.png) to
    ``out``, and the Markdown + figure (+ JSON for named reports) to ``docs_dir``."""
    from ..atomic import write_text_atomic
    from ..evaluate._io import atomic_write_bytes
    from .decoder_report import decoder_findings, decoder_markdown

    files = files or ReportFiles()
    command = command or results.get("command") or "python scripts/ablations.py"
    decoder = results.get("kind") == "decoder"
    results = {**results, "command": command, "report": files.markdown,
               "findings": decoder_findings(results) if decoder else findings(results)}
    markdown = (decoder_markdown(results, command, files.figure, files.title) if decoder
                else to_markdown(results, command, files.figure))
    png, text = to_png(results), json.dumps(results, indent=1, default=str)
    write_text_atomic(out / files.json, text)
    for folder in [out] + ([docs_dir] if docs_dir else []):
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / files.markdown, markdown + kept_discussion(folder / files.markdown))
        atomic_write_bytes(folder / files.figure, png)
        if folder == docs_dir and files.json_in_docs:
            write_text_atomic(folder / files.json, text)
    return results


#: Everything after this line of an existing results.md is hand-written and survives a rerun.
DISCUSSION_MARKER = "<!-- discussion: kept when the tables above are regenerated -->"


def kept_discussion(path: Path) -> str:
    if not path.is_file() or DISCUSSION_MARKER not in path.read_text():
        return ""
    return "\n" + DISCUSSION_MARKER + path.read_text().split(DISCUSSION_MARKER, 1)[1]
