"""CPU time of the quick end-to-end pipeline (the test suite's slowest test) in two checkouts.

    python scripts/bench_pipeline_time.py --checkout new=. --checkout old=/path/to/old/worktree --repeats 2

Each checkout runs ``pipeline(scale=0.005)`` (what tests/test_pipeline.py runs) in its own
process, interleaved (new, old, new, old, ...), so both see the same machine load. CPU seconds
are the figure to compare on a shared machine; wall seconds are printed too. A checkout older
than the redesign (issue #12) has ``nemo_minitron.pipeline`` instead of
``nemo_minitron.stages.pipeline``; both are found.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, resource, sys, tempfile, time
from pathlib import Path
try:
    from nemo_minitron.stages.pipeline import pipeline
except ImportError:
    from nemo_minitron.pipeline import pipeline
tmp = Path(tempfile.mkdtemp())
wall, cpu = time.time(), time.process_time()
try:  # since the shipped teacher (issue 17) nothing pretrains; before it, a throwaway teacher did
    from nemo_minitron.data.shipped_teacher import shipped_teacher
    teacher = {}
except ImportError:
    teacher = {"teacher_dir": str(tmp / "teacher")}
pipeline(output_dir=str(tmp / "pipe"), scale=0.005, **teacher)
print("RESULT " + json.dumps({"wall_s": time.time() - wall, "cpu_s": time.process_time() - cpu,
                               "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run_once(checkout: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.path.abspath(checkout), "HF_HUB_OFFLINE": "1",
           "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-c", CHILD], cwd=checkout, env=env, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode or not lines:
        raise SystemExit(f"pipeline failed in {checkout}:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkout", action="append", required=True, help="NAME=PATH (repeat)")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    checkouts = dict(item.split("=", 1) for item in args.checkout)
    runs = {name: [] for name in checkouts}
    for _ in range(args.repeats):
        for name, path in checkouts.items():
            runs[name].append(run_once(path))
            print(name, runs[name][-1], flush=True)
    first = next(iter(checkouts))
    mean = {name: sum(r["cpu_s"] for r in rs) / len(rs) for name, rs in runs.items()}
    print(json.dumps({"runs": runs, "mean_cpu_s": mean,
                      "cpu_ratio_to_" + first: {n: round(m / mean[first], 3) for n, m in mean.items()}}, indent=1))


if __name__ == "__main__":
    main()
