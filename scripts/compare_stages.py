#!/usr/bin/env python
"""Teacher vs several students in one table: `nemo-minitron eval` of each student against the
teacher (speed measured side by side in each run), merged into one Markdown table.

    python scripts/compare_stages.py --teacher outputs/demo/00_teacher \\
        --model pruned=outputs/demo/01_pruned --model distilled=outputs/demo/02_distilled \\
        --out outputs/demo/stage_comparison

Each student's full report stays in ``<out>/<name>/eval_report.{json,md,png}``; an existing
report is reused (delete it to re-evaluate). Extra ``--eval key=value`` pairs go to
the ``eval`` stage's function (e.g. ``--eval speed_input_len=512``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_minitron.evaluate.render import _fmt, _table, accuracy_rows, ruler_lengths  # noqa: E402
from nemo_minitron.stages.eval import evaluate  # noqa: E402


def merged_markdown(teacher: str, reports: dict[str, dict[str, Any]]) -> str:
    """One table: teacher (from the first report) and every student, by metric."""
    names = list(reports)
    first = reports[names[0]]
    columns = {"teacher": first["models"]["baseline"], **{n: reports[n]["models"]["model"] for n in names}}
    header = ["metric"] + list(columns)
    rows = [["parameters"] + [f"{c['num_params'] / 1e6:.2f}M" for c in columns.values()]]
    for task, metric in accuracy_rows(first):
        if metric != "num_samples":
            rows.append([f"{task} {metric}"] + [_fmt((c.get("lm_eval") or {}).get(task, {}).get(metric))
                                                  for c in columns.values()])
    for length in ruler_lengths(first):
        rows.append([f"RULER average @ {length} tokens"] + [_fmt((c.get("ruler_average") or {}).get(length), 3)
                                                            for c in columns.values()])
    if first.get("speed"):
        ratios = [1.0] + [reports[n]["speed"]["ratios"]["model"]["throughput_ratio"] for n in names]
        rows.append(["decode throughput vs teacher (same run)"] + [f"x{r:.2f}" for r in ratios])
        ttft = [1.0] + [reports[n]["speed"]["ratios"]["model"]["ttft_ratio"] for n in names]
        rows.append(["time to first token vs teacher"] + [f"x{r:.2f}" for r in ttft])
        s = first["speed"]["settings"]
        note = (f"Speed: input {s['input_len']} / output {s['output_len']} tokens, batch {s['batch_size']}, median "
                f"of {s['repeats']} interleaved repetitions on `{s.get('device')}`, each student timed against "
                "the teacher in its own run.")
    else:
        note = ""
    paths = ", ".join(f"{n} `{c.get('path')}`" for n, c in columns.items())
    return "\n".join([f"Models: {paths}.", ""] + _table(header, rows) + ["", note]) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--model", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval", action="append", default=[], metavar="KEY=VALUE",
                        help="extra eval-stage arguments (JSON values: ruler_lengths=[512,1024])")
    args = parser.parse_args(argv)
    extra = {}
    for item in args.eval:
        key, _, value = item.partition("=")
        try:
            extra[key] = json.loads(value)
        except json.JSONDecodeError:
            extra[key] = value
    reports = {}
    for item in args.model:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--model {item!r}: expected NAME=PATH")
        folder = Path(args.out) / name
        report_file = folder / "eval_report.json"
        if report_file.is_file():
            reports[name] = json.loads(report_file.read_text())
        else:
            reports[name] = evaluate(path, baseline_path=args.teacher, output_dir=str(folder), **extra)
    text = merged_markdown(args.teacher, reports)
    (Path(args.out) / "comparison.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
