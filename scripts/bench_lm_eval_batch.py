"""lm-eval throughput (documents/s) against its batch size, side by side on one loaded model.

    python scripts/bench_lm_eval_batch.py --model outputs/smollm2 --task hellaswag --limit 40 \
        --batch-sizes 1 8 32 auto --repeats 2

Every batch size scores the same documents; the rounds are interleaved (1, 8, 32, auto, 1, 8, ...)
so that a change of machine load hits every setting alike, and the ratio to the first batch size
is reported per round. Scores must agree across batch sizes (padding must not change a
log-likelihood beyond float noise): the script prints the largest difference it saw.
"""

from __future__ import annotations

import argparse
import json
import time

from nemo_minitron.evaluate.lm_eval_adapter import check_batch_size, load_model_and_tokenizer, run_lm_eval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint folder")
    parser.add_argument("--task", default="hellaswag")
    parser.add_argument("--limit", type=int, default=40, help="documents per run")
    parser.add_argument("--batch-sizes", nargs="+", default=["1", "8", "32", "auto"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    sizes = [check_batch_size(b, "--batch-sizes") for b in args.batch_sizes]
    model, tokenizer = load_model_and_tokenizer(args.model, device=args.device)
    rows = {str(b): [] for b in sizes}
    scores = {}
    for _ in range(args.repeats):
        for b in sizes:
            start = time.perf_counter()
            result = run_lm_eval(model, tokenizer, tasks=[args.task], limit=args.limit, batch_size=b,
                                 device=args.device, bootstrap_iters=0)
            rows[str(b)].append(args.limit / (time.perf_counter() - start))
            scores[str(b)] = result[args.task]
    base = str(sizes[0])
    out = {"model": args.model, "task": args.task, "limit": args.limit, "device": str(next(model.parameters()).device),
           "docs_per_s": {b: max(v) for b, v in rows.items()},
           "ratio_to_first": {b: round(max(v) / max(rows[base]), 2) for b, v in rows.items()},
           "per_round_docs_per_s": rows,
           "max_metric_diff": max(abs(s[m] - scores[base][m]) for s in scores.values()
                                  for m in ("acc", "acc_norm") if m in s)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
