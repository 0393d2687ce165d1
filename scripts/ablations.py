#!/usr/bin/env python
"""Reproduce the Minitron-SSM paper's pruning ablations on the shipped teacher or a real model.

    python scripts/ablations.py                       # default: 3 seeds, < 1 h on 2 cores -> docs/results.md
    python scripts/ablations.py --quick --out /tmp/a  # every code path in a couple of minutes
    python scripts/ablations.py --model smollm2-135m  # SmolLM2-135M, <= 2 h -> docs/smollm2_compression.md
                                                      # (scripts/compress_smollm2.py is this)

Also: ``nemo-minitron ablations output_dir=DIR [model=smollm2-135m] [quick=true]``. Rerunning
with the same --out resumes (finished students and runs are reused).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nemo_minitron.stages.ablations import ablations  # noqa: E402
from recipes.ablations import DEFAULT  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None,
                        help="work and result folder, resumable (default: outputs/ablations, or "
                             "outputs/<model>_compression with --model)")
    parser.add_argument("--model", default=None,
                        help="a built-in pretrained model to compress (smollm2-135m), imported into --out/teacher")
    parser.add_argument("--teacher", default=None,
                        help="teacher checkpoint (default: the shipped teacher, nemo_minitron/data/teacher)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets for the test suite (numbers meaningless)")
    parser.add_argument("--seeds", type=int, default=None,
                        help=f"distillation seeds per student (default {DEFAULT.num_seeds})")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"distillation steps per student (default {DEFAULT.steps})")
    parser.add_argument("--match-factor", type=int, default=None,
                        help="the random-init student's long run, in multiples of --steps "
                             f"(default {DEFAULT.match_factor})")
    parser.add_argument("--workers", type=int, default=None,
                        help=f"parallel single-thread trainings (default {DEFAULT.workers})")
    parser.add_argument("--docs", default=None,
                        help="also write results.md + ablations.png here (default: docs/ unless --quick)")
    args = parser.parse_args(argv)
    out = args.out or (f"outputs/{args.model.split('-')[0]}_compression" if args.model else "outputs/ablations")
    docs = args.docs if args.docs is not None else (None if args.quick else "docs")
    results = ablations(output_dir=out, teacher_path=args.teacher, model=args.model, quick=args.quick,
                        num_seeds=args.seeds, steps=args.steps, match_factor=args.match_factor, workers=args.workers,
                        docs_dir=docs)
    for f in results["findings"]:
        print(f"{f['finding']}. {f['question']}: {f['verdict']} -- {f['here']}")
    report = results["report"]
    print(f"report: {Path(out) / report}" + (f" and {Path(docs) / report}" if docs else "")
          + f" ({results['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
