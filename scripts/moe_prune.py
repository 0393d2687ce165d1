"""Prune time and peak memory of an MoE hybrid (Nemotron 3 Nano's layer kinds: Mamba, MoE, attention) through the
CLI, side by side with a dense hybrid of the same active shape (every MoE block replaced by one MLP as wide as a
token's experts: top-k x expert width + shared width), on CPU.

    python scripts/moe_prune.py --out outputs/moe_prune

Both checkpoints are random (seeded) with the offline 32000-token tokenizer, so the numbers are costs, not
quality. Each is pruned ``--repeats`` times by ``nemo-minitron prune``, the two alternating so that load from
other processes hits both alike (default offline corpus, the same calibration settings; medians reported);
the pruned MoE model is then reloaded with plain transformers and generates. Writes ``results.json`` and prints
a Markdown table (recorded in docs/pruning.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from statistics import median_high

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from benchlib import cpu_name, run_cli  # noqa: E402
from nemo_minitron.arch import MLP, MOE, HybridArch  # noqa: E402
from nemo_minitron.data.tokenizer import load_default_tokenizer  # noqa: E402
from nemo_minitron.models import build_model, is_complete_checkpoint, save_checkpoint  # noqa: E402

#: Nano's layer order at small scale: 16 routed experts (top 4) of 128 neurons and a 256-neuron shared expert.
MOE_ARCH = HybridArch(
    family="nemotron_h", pattern="MEMEM*EMEMEM*EME", hidden_size=256, vocab_size=32000, num_attention_heads=8,
    num_query_groups=2, attention_head_dim=32, mamba_num_heads=16, mamba_head_dim=32, mamba_num_groups=4,
    mamba_state_dim=32, num_moe_experts=16, moe_router_topk=4, moe_ffn_hidden_size=128,
    moe_shared_expert_intermediate_size=256,
)
#: The same active shape without routing: each MoE block becomes an MLP of top-k x 128 + 256 neurons.
DENSE_ARCH = dataclasses.replace(
    MOE_ARCH, pattern=MOE_ARCH.pattern.replace(MOE, MLP), ffn_hidden_size=4 * 128 + 256)

MOE_TARGETS = {"target_hidden_size": 224, "target_num_moe_experts": 12, "target_moe_ffn_hidden_size": 96,
               "target_moe_shared_expert_intermediate_size": 192}
DENSE_TARGETS = {"target_hidden_size": 224, "target_ffn_hidden_size": 576}


def prune_once(name: str, arch: HybridArch, targets: dict[str, int], out: Path, args: argparse.Namespace) -> dict:
    source = out / f"{name}_source"
    if not is_complete_checkpoint(source):
        save_checkpoint(build_model(arch.validate(), seed=0), source, tokenizer=load_default_tokenizer())
    pruned = out / f"{name}_pruned"
    return run_cli("prune", f"model_path={source}", f"save_path={pruned}", f"num_samples={args.num_samples}",
                       f"seq_length={args.seq_length}", "batch_size=4",
                       f"layer_importance_samples={args.layer_importance_samples}", "device=cpu", "overwrite=true",
                       *[f"pruning_config.{k}={v}" for k, v in targets.items()])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/moe_prune")
    parser.add_argument("--num-samples", type=int, default=16)
    parser.add_argument("--seq-length", type=int, default=256)
    parser.add_argument("--layer-importance-samples", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cases = {"moe": (MOE_ARCH, MOE_TARGETS), "dense": (DENSE_ARCH, DENSE_TARGETS)}
    runs: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (arch, targets) in cases.items():
            runs[name].append(prune_once(name, arch, targets, out, args))
    rows = {}
    for name, (arch, _) in cases.items():
        summary = json.loads((out / f"{name}_pruned" / "prune_summary.json").read_text())
        rows[name] = {"arch": arch.describe(), "params": arch.num_params(), "active_params": arch.num_active_params(),
                      "target": summary["target"], "target_params": summary["target_params"],
                      "wall_s": median_high([r["wall_s"] for r in runs[name]]),
                      "peak_rss_mib": median_high([r["peak_rss_mib"] for r in runs[name]]), "runs": runs[name]}

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(out / "moe_pruned")).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(out / "moe_pruned"))
    ids = tokenizer("The river runs past the old mill", return_tensors="pt").input_ids
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=8, do_sample=False)
    result = {"command": "python scripts/moe_prune.py " + " ".join(sys.argv[1:]), "cpu": cpu_name(),
              "torch_threads": torch.get_num_threads(), "calibration": vars(args), **rows,
              "ratio_moe_to_dense": {"wall_s": round(rows["moe"]["wall_s"] / rows["dense"]["wall_s"], 2),
                                     "peak_rss_mib": round(rows["moe"]["peak_rss_mib"] / rows["dense"]["peak_rss_mib"],
                                                           2)},
              "plain_transformers_generate_tokens": int(generated.shape[1] - ids.shape[1])}
    (out / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    print("| model | params (active) | pruned to | prune wall | peak RSS |\n|---|---|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['params'] / 1e6:.2f}M ({row['active_params'] / 1e6:.2f}M) | {row['target']} | "
              f"{row['wall_s']} s | {row['peak_rss_mib']} MiB |")
    print(f"MoE / dense: wall {result['ratio_moe_to_dense']['wall_s']}x, "
          f"peak RSS {result['ratio_moe_to_dense']['peak_rss_mib']}x")


if __name__ == "__main__":
    main()
