"""Render an evaluation report (the dict built by :mod:`.report`) as Markdown and as a PNG.

Kept apart from the measuring code so a report JSON can be re-rendered (e.g. after a format
change) without re-running any model. The PNG uses matplotlib's object API with the Agg canvas,
never ``pyplot``, so it works headless and does not touch global plotting state.
"""

from __future__ import annotations

import io
import math
from typing import Any, Dict, List, Optional, Sequence

from nemo_minitron.evaluate.local_tasks import CORPUS_PPL

#: Metrics worth plotting side by side (bounded, comparable); perplexities can be astronomically
#: large for untrained models and are only tabulated.
_PLOT_EXCLUDE = ("perplexity", "stderr", "num_samples")
_ROLES = ("baseline", "model")
_LOWER_IS_BETTER = ("bits_per_byte",)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.{digits}g}" if abs(value) >= 1 else f"{value:.{digits}f}"
    return str(value)


def _roles(report: Dict[str, Any]) -> List[str]:
    """The report's models in reading order: the baseline, any other named ones (``compare_paths``,
    e.g. the pruned student), the model last."""
    models = report.get("models", {})
    extras = [r for r in models if r not in _ROLES]
    return [r for r in ("baseline", *extras, "model") if r in models]


def _others(roles: List[str]) -> List[str]:
    """The roles measured against the baseline (all but it), or none without a baseline."""
    return [r for r in roles if r != "baseline"] if "baseline" in roles else []


def role_colors(roles: Sequence[str]) -> Dict[str, str]:
    """Baseline grey, model NVIDIA green, others from matplotlib's default cycle."""
    cycle = iter(["#1f77b4", "#ff7f0e", "#9467bd", "#d62728", "#8c564b", "#17becf"])
    return {r: {"baseline": "#7f7f7f", "model": "#76b900"}.get(r) or next(cycle) for r in roles}


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def accuracy_rows(report: Dict[str, Any]) -> List[tuple]:
    """``(task, metric)`` pairs present for any model, in first-seen order (stderr excluded,
    ``num_samples`` last within its task)."""
    pairs: List[tuple] = []
    for role in _roles(report):
        for task, metrics in (report["models"][role].get("lm_eval") or {}).items():
            for metric in metrics:
                if "stderr" not in metric and (task, metric) not in pairs:
                    pairs.append((task, metric))
    tasks = list(dict.fromkeys(t for t, _ in pairs))
    return sorted(pairs, key=lambda tm: (tasks.index(tm[0]), tm[1] == "num_samples"))


def benchmark_summary(report: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """Standard benchmarks (the offline lm-eval tasks) in one metric each: n, every model's score with
    stderr, delta (model - baseline), the averages, the share of the baseline's average each other
    model keeps (``retained``; ``average_retained`` is the model's); ``None`` when no task was scored."""
    from nemo_minitron.evaluate.offline_tasks import OFFLINE_TASKS

    roles = _roles(report)
    scores = {r: report["models"][r].get("lm_eval") or {} for r in roles}
    rows = []
    for name, task in OFFLINE_TASKS.items():
        if not any(task.metric in scores[r].get(name, {}) for r in roles):
            continue
        row: Dict[str, Any] = {"task": name, "metric": task.metric, "split": task.split, "chance": task.chance}
        for role in roles:
            got = scores[role].get(name, {})
            row["n"] = got.get("num_samples", row.get("n"))
            row[role], row[f"{role}_stderr"] = got.get(task.metric), got.get(f"{task.metric}_stderr")
        if "model" in roles and "baseline" in roles and None not in (row["model"], row["baseline"]):
            row["delta"] = row["model"] - row["baseline"]
        rows.append(row)
    if not rows:
        return None
    summary: Dict[str, Any] = {"rows": rows}
    both = [row for row in rows if all(row.get(r) is not None for r in roles)]
    for role in roles:
        summary[f"{role}_average"] = sum(row[role] for row in both) / len(both) if both else None
    if summary.get("baseline_average"):
        summary["retained"] = {r: summary[f"{r}_average"] / summary["baseline_average"] for r in _others(roles)}
        if "model" in summary["retained"]:
            summary["average_retained"] = summary["retained"]["model"]
    return summary


def _stderr(row: Dict[str, Any], role: str) -> float:
    stderr = row.get(f"{role}_stderr")
    return stderr if isinstance(stderr, float) and not math.isnan(stderr) else 0.0


def row_at_chance(row: Dict[str, Any], roles: List[str]) -> bool:
    """True when every model's score on this benchmark is within two standard errors of chance."""
    return all(abs(row[role] - row["chance"]) <= max(2 * _stderr(row, role), 1e-9)
               for role in roles if row.get(role) is not None)


def at_chance(summary: Dict[str, Any], roles: List[str]) -> bool:
    """True when every model's score on every benchmark is within two standard errors of chance."""
    return all(row_at_chance(row, roles) for row in summary["rows"])


def average_stderr(summary: Dict[str, Any], role: str) -> float:
    """Standard error of a model's benchmark average (the tasks' samples are independent)."""
    rows = [row for row in summary["rows"] if row.get(role) is not None]
    return math.sqrt(sum(_stderr(row, role) ** 2 for row in rows)) / len(rows) if rows else 0.0


def _with_stderr(value: Any, stderr: Any) -> str:
    return _fmt(value) + (f" ± {_fmt(stderr, 3)}" if isinstance(stderr, float) and not math.isnan(stderr) else "")


def benchmark_lines(report: Dict[str, Any], roles: List[str]) -> List[str]:
    summary = benchmark_summary(report)
    if not summary:
        return []
    delta = len(roles) == 2 and "baseline" in roles
    header = ["task", "split", "n", "metric"] + [f"{r} ± stderr" for r in roles] + (["delta"] if delta else [])
    rows = []
    for row in summary["rows"]:
        cells = [row["task"], row["split"], _fmt(row.get("n")), row["metric"]]
        cells += [_with_stderr(row.get(r), row.get(f"{r}_stderr")) for r in roles]
        if delta:
            cells.append(_fmt(row.get("delta")))
        rows.append(cells)
    rows.append(["**average**", "", "", ""] + [_fmt(summary.get(f"{r}_average")) for r in roles]
                + (["-"] if delta else []))
    lines = ["## Standard benchmarks (lm-eval tasks on offline data)", ""] + _table(header, rows) + [""]
    if at_chance(summary, roles):
        chances = ", ".join(f"{row['task']} {row['chance']:.2f}" for row in summary["rows"])
        lines += [f"Every model is within two standard errors of chance on every task (chance: {chances}): "
                  "at this size these benchmarks do not separate the models, and the retained shares below "
                  "compare noise. The held-out bits per byte is the measure that does.", ""]
    else:
        chance_rows = [row for row in summary["rows"] if row_at_chance(row, roles)]
        if chance_rows:
            named = ", ".join(f"{row['task']} (chance {row['chance']:.2f})" for row in chance_rows)
            these = "that task does" if len(chance_rows) == 1 else "these tasks do"
            lines += [f"Every model is within two standard errors of chance on {named}: {these} not "
                      "separate these models, though they still count in the averages.", ""]
    for role, share in (summary.get("retained") or {}).items():
        lines.append(f"Average retained ({role} average / baseline average): **{share:.3f}**")
    return lines + ([""] if summary.get("retained") else [])


def ruler_lengths(report: Dict[str, Any]) -> List[str]:
    lengths = {length for role in _roles(report)
               for by_len in (report["models"][role].get("ruler") or {}).values() for length in by_len}
    return sorted(lengths, key=int)


def instruct_lines(report: Dict[str, Any], roles: List[str]) -> List[str]:
    """The checkable instruction tasks: greedy accuracy per task and role (empty if not run)."""
    results = {r: report["models"][r]["instruct"] for r in roles if report["models"][r].get("instruct")}
    if not results:
        return []
    if _all_zero([a for res in results.values() for a in res["accuracy"].values()]):
        return ["## Checkable instruction tasks (greedy exact answer, 0-1)", "",
                f"Every instruction task ({', '.join(sorted({t for res in results.values() for t in res['accuracy']}))}) "
                f"scores 0.000 for {' and '.join(results)}: none of these models has been "
                "instruction-tuned on these tasks (or tuned enough to answer them exactly), so there is no table.",
                ""]
    tasks = list(dict.fromkeys(t for res in results.values() for t in res["accuracy"]))
    rows = [[t] + [_fmt(res["accuracy"].get(t), 3) for res in results.values()] for t in tasks]
    rows.append(["**mean**"] + [_fmt(res["mean_accuracy"], 3) for res in results.values()])
    n = next(iter(results.values()))["n_per_task"]
    return (["## Checkable instruction tasks (greedy exact answer, 0-1)", "",
             f"{max(n.values())} held-out prompts per task, scored by the task's checker.", ""]
            + _table(["task", *results], rows) + [""])


def _lm_eval_value(report: Dict[str, Any], role: str, task: str, metric: str) -> Optional[float]:
    value = ((report["models"][role].get("lm_eval") or {}).get(task) or {}).get(metric)
    return value if isinstance(value, (int, float)) and not math.isnan(value) else None


def headline_lines(report: Dict[str, Any], roles: List[str]) -> List[str]:
    """What the run shows, first: held-out bits/byte, the benchmark average (and the share of the
    baseline's kept), size and speed of every model, with ratios to the baseline; and, for each
    model between the baseline and the model (e.g. a pruned student before distillation), the share
    of the gap it opened that the model closes."""
    models, others = report["models"], _others(roles)
    lines: List[str] = []

    def pair(values: List[Optional[float]], fmt: str, what: str, ratio_label: str = "") -> None:
        if any(v is None for v in values):
            return
        text = " vs ".join(f"{r} {fmt.format(v)}" for r, v in zip(roles, values))
        base = values[0] if others else None
        if ratio_label and base:
            text += " (" + ", ".join(f"{r}/baseline {values[roles.index(r)] / base:.2f}x" for r in others) + ")"
        lines.append(f"- **{what}**: {text}")

    def recovered(values: List[Optional[float]], what: str, lower_is_better: bool,
                  stderrs: Optional[Dict[str, float]] = None) -> None:
        """Only where the middle model is worse than the baseline: then there is a gap to close; with
        ``stderrs``, only where that gap is more than two standard errors of the difference."""
        if not others or "model" not in roles or any(v is None for v in values):
            return
        by_role = dict(zip(roles, values))
        for middle in roles[1:-1]:
            gap = by_role[middle] - by_role["baseline"]
            noise = 2 * math.hypot(stderrs["baseline"], stderrs[middle]) if stderrs else 0.0
            if ((gap > 1e-9) if lower_is_better else (gap < -1e-9)) and abs(gap) <= noise:
                lines.append(f"- **{what}: the gap that {middle} opened ({gap:+.3f}) is within two standard "
                             f"errors of the difference ({noise:.3f}), so no gap closure is claimed**")
            elif (gap > 1e-9) if lower_is_better else (gap < -1e-9):
                share = (by_role[middle] - by_role["model"]) / gap
                verb = "closes" if share >= 0 else "widens (negative share)"
                lines.append(f"- **{what}: the model {verb} {share:.0%} of the gap that {middle} opened** "
                             f"({middle} {by_role[middle] - by_role['baseline']:+.3f}, model "
                             f"{by_role['model'] - by_role['baseline']:+.3f} from the baseline)")

    bpb = [_lm_eval_value(report, r, CORPUS_PPL, "bits_per_byte") for r in roles]
    pair(bpb, "{:.3f}", "held-out bits per byte (lower is better)")
    recovered(bpb, "bits per byte", lower_is_better=True)
    summary = benchmark_summary(report)
    if summary:
        averages = [summary.get(f"{r}_average") for r in roles]
        noise = at_chance(summary, roles)
        chance = " (every model within two standard errors of chance on every task)" if noise else ""
        pair(averages, "{:.3f}", f"standard benchmark average ({len(summary['rows'])} tasks){chance}")
        if noise:  # shares and gap closure of chance-level scores would present noise as a finding
            lines.append("- **no benchmark share or gap closure is claimed**: at chance they would compare noise")
        else:
            for role, share in (summary.get("retained") or {}).items():
                lines.append(f"- **share of the baseline's benchmark average kept by {role}**: {share:.1%}")
            recovered(averages, "benchmark average", lower_is_better=False,
                      stderrs={r: average_stderr(summary, r) for r in roles})
    pair([models[r].get("num_params") for r in roles], "{:,}", "parameters", "ratio")
    speed = (report.get("speed") or {}).get("models") or {}
    if all(r in speed for r in roles):
        pair([speed[r].get("decode_tokens_per_s") for r in roles], "{:.1f} tokens/s", "decode throughput", "ratio")
        pair([speed[r].get("ttft_s") for r in roles], "{:.3f} s", "time to first token", "ratio")
    return (["## What this run shows", ""] + lines + [""]) if lines else []


def _all_zero(values: Sequence[Any]) -> bool:
    numbers = [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]
    return bool(numbers) and all(v == 0 for v in numbers)


def to_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown: what the run shows, accuracy per task, RULER by task and length, speed.

    A table whose every cell is zero for every model is replaced by a sentence saying so and why."""
    roles = _roles(report)
    models = report["models"]
    lines = ["# Evaluation report", ""]
    for role in roles:
        info = models[role]
        params = info.get("num_params")
        lines.append(f"- **{role}**: `{info.get('path')}`" + (f" ({params / 1e6:.2f}M parameters)" if params else ""))
    lines.append("")

    lines += headline_lines(report, roles)
    lines += benchmark_lines(report, roles)
    pairs = accuracy_rows(report)
    if pairs:
        lines += ["## Accuracy (lm-eval-harness)", ""]
        delta = roles == ["baseline", "model"]
        header = ["task", "metric"] + roles + (["model - baseline"] if delta else [])
        rows = []
        for task, metric in pairs:
            vals = [(models[r].get("lm_eval") or {}).get(task, {}).get(metric) for r in roles]
            row = [task, metric] + [_fmt(v) for v in vals]
            if delta:
                row.append(_fmt(vals[1] - vals[0]) if None not in vals and "num_samples" not in metric else "-")
            rows.append(row)
        lines += _table(header, rows) + [""]

    lengths = ruler_lengths(report)
    ruler_values = [v for r in roles for by_len in (models[r].get("ruler") or {}).values() for v in by_len.values()]
    if lengths and _all_zero(ruler_values):
        ruler_tasks = sorted({t for r in roles for t in (models[r].get("ruler") or {})})
        lines += ["## RULER (string match, 0-1)", "",
                  f"Every RULER cell ({', '.join(ruler_tasks)}) is 0.000 for {' and '.join(roles)} at {', '.join(lengths)} tokens: these models "
                  "cannot yet retrieve or track anything over such contexts, so the table (all zeros) is left out. "
                  "RULER separates models that have had long-context training; see the JSON for the samples.", ""]
    elif lengths:
        lines += ["## RULER (string match, 0-1)", ""]
        tasks: List[str] = []
        for role in roles:
            tasks += [t for t in (models[role].get("ruler") or {}) if t not in tasks]
        header = ["task"] + [f"{length} {role}" for length in lengths for role in roles]
        rows = []
        for task in tasks + ["average"]:
            row = [f"**{task}**" if task == "average" else task]
            for length in lengths:
                for role in roles:
                    src = models[role].get("ruler_average" if task == "average" else "ruler") or {}
                    val = src.get(length) if task == "average" else src.get(task, {}).get(length)
                    row.append(_fmt(val, 3))
            rows.append(row)
        lines += _table(header, rows) + [""]

    lines += instruct_lines(report, roles)
    speed = report.get("speed")
    if speed:
        s = speed["settings"]
        lines += ["## Speed", "",
                  f"input {s['input_len']} tokens, output {s['output_len']} tokens, batch {s['batch_size']}, "
                  f"median of {s['repeats']} interleaved repetitions on `{s.get('device')}`", ""]
        names = [r for r in roles if r in speed["models"]]
        vs = _others(names)
        header = ["metric"] + names + [f"ratio {r}/baseline" for r in vs]
        rows = []
        for key, label in (("ttft_s", "time to first token (s)"), ("decode_tokens_per_s", "decode throughput (tokens/s)"),
                           ("total_s", "total generate time (s)"), ("e2e_tokens_per_s", "end-to-end tokens/s"),
                           ("peak_memory_gb", "peak GPU memory (GiB)")):
            vals = [speed["models"][n].get(key) for n in names]
            if all(v is None for v in vals):
                continue
            row = [label] + [_fmt(v) for v in vals]
            base = vals[0]
            row += [_fmt(vals[names.index(r)] / base) if vals[names.index(r)] is not None and base else "-" for r in vs]
            rows.append(row)
        lines += _table(header, rows) + [""]
    return "\n".join(lines)


def _grouped_bars(ax: Any, report: Dict[str, Any], roles: List[str], pairs: List[tuple],
                  colors: Dict[str, str]) -> None:
    """One group of bars (one per model) for each ``(task, metric)``, values on top."""
    models = report["models"]
    width = 0.8 / max(len(roles), 1)
    for k, role in enumerate(roles):
        vals = [(models[role].get("lm_eval") or {}).get(t, {}).get(m, math.nan) for t, m in pairs]
        xs = [i + (k - (len(roles) - 1) / 2) * width for i in range(len(pairs))]
        ax.bar(xs, vals, width, label=role, color=colors[role])
        for x, v in zip(xs, vals):
            if v is not None and not math.isnan(v):
                ax.text(x, v, f"{v:.3g}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels([f"{t}\n{m}" for t, m in pairs], fontsize=7, rotation=15, ha="right")
    if pairs:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no such lm-eval metric", ha="center", va="center", transform=ax.transAxes)


def to_png(report: Dict[str, Any], dpi: int = 120) -> bytes:
    """PNG bytes: accuracy bars per task, RULER average by length, speed ratio (model/baseline)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    roles = _roles(report)
    models = report["models"]
    colors = role_colors(roles)
    fig = Figure(figsize=(17, 4.8))
    FigureCanvasAgg(fig)
    ax_acc, ax_bpb, ax_ruler, ax_speed = fig.subplots(1, 4, gridspec_kw={"width_ratios": [2, 0.8, 1.4, 1]})

    pairs = [(t, m) for t, m in accuracy_rows(report) if not any(x in m for x in _PLOT_EXCLUDE)]
    lower_better = [(t, m) for t, m in pairs if m in _LOWER_IS_BETTER]
    higher_better = [(t, m) for t, m in pairs if m not in _LOWER_IS_BETTER]
    for ax, chosen, title in ((ax_acc, higher_better, "lm-eval accuracy (higher is better)"),
                              (ax_bpb, lower_better, "lm-eval (lower is better)")):
        _grouped_bars(ax, report, roles, chosen, colors)
        ax.set_title(title, fontsize=10)
    if higher_better:
        ax_acc.set_ylim(0, 1.05)
    lengths = ruler_lengths(report)
    for role in roles:
        avg = models[role].get("ruler_average") or {}
        if avg:
            ax_ruler.plot([int(x) for x in lengths], [avg.get(x, math.nan) for x in lengths], "o-", label=f"{role} (avg)",
                          color=colors[role], linewidth=2)
        for task, by_len in (models[role].get("ruler") or {}).items():
            ax_ruler.plot([int(x) for x in lengths], [by_len.get(x, math.nan) for x in lengths], ":",
                          color=colors[role], alpha=0.35, linewidth=1)
    ax_ruler.set_title("RULER by context length (dotted: tasks)")
    ax_ruler.set_xlabel("tokens")
    ax_ruler.set_ylim(-0.02, 1.02)
    if lengths:
        ax_ruler.set_xscale("log", base=2)
        ax_ruler.set_xticks([int(x) for x in lengths])
        ax_ruler.set_xticklabels(lengths, fontsize=8)
        ax_ruler.legend(fontsize=8)
    else:
        ax_ruler.text(0.5, 0.5, "RULER not run", ha="center", va="center", transform=ax_ruler.transAxes)

    speed = report.get("speed")
    ratios: Dict[str, Dict[str, float]] = {}
    if speed and speed.get("baseline") == "baseline":
        ratios = {r: speed["ratios"][r] for r in _others(roles) if r in speed.get("ratios", {})}
    if ratios:
        width = 0.8 / len(ratios)
        for k, (role, ratio) in enumerate(ratios.items()):
            xs = [i + (k - (len(ratios) - 1) / 2) * width for i in range(2)]
            vals = [ratio["throughput_ratio"], ratio["ttft_speedup"]]
            ax_speed.bar(xs, vals, width, color=colors[role], label=role)
            for x, v in zip(xs, vals):
                ax_speed.text(x, v, f"{v:.2f}x", ha="center", va="bottom", fontsize=8)
        ax_speed.set_xticks([0, 1])
        ax_speed.set_xticklabels(["decode\nthroughput", "TTFT\nspeedup"])
        ax_speed.axhline(1.0, color=colors["baseline"], linestyle="--", linewidth=1)
        if len(ratios) > 1:
            ax_speed.legend(fontsize=8)
        s = speed["settings"]
        ax_speed.set_title(f"speed vs baseline\n(in {s['input_len']}, out {s['output_len']}, batch {s['batch_size']})",
                           fontsize=9)
    else:
        ax_speed.text(0.5, 0.5, "no speed comparison\n(needs a baseline)", ha="center", va="center",
                      transform=ax_speed.transAxes)
        ax_speed.set_axis_off()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
