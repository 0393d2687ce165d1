"""SmolLM2-135M, a real pretrained model that installs offline: prune it on every axis through the CLI,
reload it with plain transformers and generate, and compare activation-based pruning with random pruning
of the same shape (zero-shot loss on held-out text, before any distillation). Records the prune stage's
wall time and peak memory (resident set size of the CLI process).

    python scripts/smollm2_prune.py --out outputs/smollm2_prune

Steps (each reused when its output exists): ``nemo-minitron import source=smollm2-135m`` ->
``nemo-minitron prune`` (hidden, FFN, attention heads and depth) -> in this process: held-out loss of the
source, the CLI-pruned model and ``--random-seeds`` random plans of the same shape (``make_plan`` on random
scores, so they obey the same KV-group and whole-layer rules), plus ``--per-axis`` comparisons (one random
plan each; alone, the hidden target is rounded down to a multiple of the 9 heads). Writes
``results.json`` and prints a Markdown table (recorded in docs/pruning.md and docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import cpu_name, run_cli  # noqa: E402
from nemo_minitron.models import is_complete_checkpoint, load_model, load_tokenizer  # noqa: E402
from nemo_minitron.prune import ImportanceScores, PruningConfig, apply_plan, make_plan  # noqa: E402

PROMPT = "The capital of France is Paris. The capital of Germany is"


def randomized(scores: ImportanceScores, seed: int) -> ImportanceScores:
    """The same score tables filled with random numbers: ``make_plan`` on them is random pruning."""
    gen = torch.Generator().manual_seed(seed)

    def rand(t: torch.Tensor) -> torch.Tensor:
        return torch.rand(t.shape, generator=gen)

    return ImportanceScores(arch=scores.arch, hidden=rand(scores.hidden),
                            ffn={i: rand(t) for i, t in scores.ffn.items()},
                            attention={i: rand(t) for i, t in scores.attention.items()},
                            layers={m: rand(t) for m, t in scores.layers.items()}, meta={"random_seed": seed})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/smollm2_prune")
    parser.add_argument("--hidden", type=int, default=480)
    parser.add_argument("--ffn", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--num-samples", type=int, default=16, help="calibration sequences")
    parser.add_argument("--seq-length", type=int, default=128, help="calibration sequence length")
    parser.add_argument("--layer-importance-samples", type=int, default=4)
    parser.add_argument("--val-samples", type=int, default=24, help="held-out sequences")
    parser.add_argument("--val-seq-length", type=int, default=256)
    parser.add_argument("--random-seeds", type=int, default=2)
    parser.add_argument("--per-axis", action="store_true", help="also compare each axis pruned alone")
    args = parser.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    source_dir, pruned_dir = out / "smollm2-135m", out / "pruned"
    results_file = out / "results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.is_file() else {}
    results.update({"cpu": cpu_name(), "threads": torch.get_num_threads(), "args": vars(args)})

    def save() -> None:  # after every step, so a later failure keeps the measurements
        out.mkdir(parents=True, exist_ok=True)
        results_file.write_text(json.dumps(results, indent=1))

    if not is_complete_checkpoint(source_dir):
        results["import"] = {**run_cli("import", "source=smollm2-135m", f"save_path={source_dir}"),
                             "load_avg_after": os.getloadavg()[0]}
        save()
    targets = {"target_hidden_size": args.hidden, "target_ffn_hidden_size": args.ffn,
               "target_num_attention_heads": args.heads, "target_num_layers": args.layers}
    if not is_complete_checkpoint(pruned_dir):
        load_before = os.getloadavg()[0]
        results["prune"] = run_cli(
            "prune", f"model_path={source_dir}", f"save_path={pruned_dir}", *(f"pruning_config.{k}={v}" for k, v in
                                                                                targets.items()),
            f"num_samples={args.num_samples}", f"seq_length={args.seq_length}", "device=cpu",
            f"layer_importance_samples={args.layer_importance_samples}")
        results["prune"].update(load_avg_before=load_before, load_avg_after=os.getloadavg()[0])
        save()
    summary = json.loads((pruned_dir / "prune_summary.json").read_text())
    results["prune_summary"] = {k: summary[k] for k in ("source", "target", "source_params", "target_params",
                                                        "seconds")}

    from transformers import AutoModelForCausalLM

    from nemo_minitron.data.tokens import corpus_tokens, sample_rows
    from nemo_minitron.train.metrics import validation_loss

    tokenizer = load_tokenizer(source_dir)
    val = sample_rows(corpus_tokens(tokenizer, args.val_seq_length, split="validation"), args.val_samples, 0,
                      "validation")
    results["held_out"] = {"split": "validation (offline corpus)", "rows": val.shape[0], "tokens": val.numel()}
    source = load_model(source_dir).eval()
    plain = AutoModelForCausalLM.from_pretrained(pruned_dir, local_files_only=True).eval()  # plain transformers
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    generated = plain.generate(ids, max_new_tokens=16, do_sample=False)
    results["generation"] = {"prompt": PROMPT, "pruned": tokenizer.decode(generated[0, ids.shape[1]:]),
                             "source": tokenizer.decode(source.generate(ids, max_new_tokens=16, do_sample=False)
                                                        [0, ids.shape[1]:])}
    loss = {"source": validation_loss(source, val), "activation (CLI)": validation_loss(plain, val)}
    scores = ImportanceScores.load(pruned_dir / "importance.safetensors")
    results["loss"] = loss
    save()
    comparisons = {"all axes": PruningConfig(**targets)}
    if args.per_axis:
        heads = scores.arch.num_attention_heads  # alone, hidden must stay a multiple of the 9 heads (LlamaConfig)
        alone = {**targets, "target_hidden_size": args.hidden - args.hidden % heads}
        comparisons.update({name: PruningConfig(**{key: alone[key]}) for name, key in (
            ("hidden only", "target_hidden_size"), ("FFN only", "target_ffn_hidden_size"),
            ("heads only", "target_num_attention_heads"), ("depth only", "target_num_layers"))})
    rows = results["comparisons"] = []
    for name, config in comparisons.items():
        plan = make_plan(scores, config)
        row = {"axes": name, "target": plan.target.describe(),
               "activation": validation_loss(apply_plan(source, plan), val)}
        seeds = range(args.random_seeds if name == "all axes" else 1)  # one random plan per single axis
        row["random"] = [validation_loss(apply_plan(source, make_plan(randomized(scores, seed), config)), val)
                         for seed in seeds]
        rows.append(row)
        save()
        print(json.dumps(row), flush=True)

    print(f"\nsource {summary['source']}; held-out loss {loss['source']:.3f} nats/token "
          f"({val.numel()} tokens); CLI-pruned {loss['activation (CLI)']:.3f}")
    print("\n| axes pruned | shape | activation-based | random (same shape) |\n|---|---|---|---|")
    for row in rows:
        randoms = ", ".join(f"{r:.3f}" for r in row["random"])
        print(f"| {row['axes']} | {row['target']} | {row['activation']:.3f} | {randoms} |")
    print(f"\ngeneration: {results['generation']}")
    print(f"prune: {results.get('prune')}, stage seconds {summary['seconds']}")


if __name__ == "__main__":
    main()
