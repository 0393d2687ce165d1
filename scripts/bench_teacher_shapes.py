"""Training throughput of candidate teacher shapes on this machine (one thread by default).

Each shape trains on random token rows (throughput does not depend on the text) with the same
AdamW step the pretrain stage uses, for ``--seconds`` after one untimed warm-up step; the shapes
run one after the other, so run it on a quiet machine or compare ratios only. Prints one JSON
line per shape: parameters, embeddings share, bf16 size and tokens/s.

    OMP_WAIT_POLICY=PASSIVE nice -n 10 python scripts/bench_teacher_shapes.py --seconds 60
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from nemo_minitron.arch import PRESETS, HybridArch
from nemo_minitron.models import build_model
from nemo_minitron.train import make_adamw


def candidates() -> dict[str, HybridArch]:
    """The shapes compared for the teacher (docs/teacher.md): the same 14-block pattern, three widths,
    and the widest with the Mamba state and scan chunk of Nemotron-H's configs (64 / 128 here)."""
    teacher = PRESETS["teacher"]
    h384 = teacher.replace(hidden_size=384, ffn_hidden_size=1024, num_attention_heads=6, attention_head_dim=64,
                           mamba_num_heads=24, mamba_head_dim=32)
    return {
        "h256": teacher.replace(hidden_size=256, ffn_hidden_size=1024, num_attention_heads=4, attention_head_dim=64,
                                mamba_num_heads=16, mamba_head_dim=32),
        "teacher (h320)": teacher,
        "h384": h384,
        "h384-state64": h384.replace(mamba_state_dim=64),
    }


def tokens_per_second(arch: HybridArch, batch: int, seq_len: int, seconds: float,
                      chunk: int | None) -> tuple[float, float]:
    """(tokens per wall second, tokens per CPU second of this process). On a shared machine the second
    is the one to compare: with one thread and ``OMP_WAIT_POLICY=PASSIVE`` CPU time is the work done."""
    model = build_model(arch, seed=0)
    if chunk:
        for layer in model.model.layers:
            if hasattr(layer.mixer, "chunk_size"):
                layer.mixer.chunk_size = chunk
    model.train()
    optimizer = make_adamw(model, lr=1e-3, weight_decay=0.1)
    ids = torch.randint(0, arch.vocab_size, (batch, seq_len), generator=torch.Generator().manual_seed(0))

    def step() -> None:
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step()  # warm-up: allocator, kernels
    steps, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds or steps < 2:
        step()
        steps += 1
    tokens = steps * batch * seq_len
    return tokens / (time.perf_counter() - start), tokens / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--chunk", type=int, default=64, help="Mamba scan chunk size (0: the config's, 128)")
    parser.add_argument("--only", nargs="*", default=None, help="shape names to run")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, arch in candidates().items():
        if args.only and name not in args.only:
            continue
        n = arch.num_params()
        embed = 2 * arch.vocab_size * arch.hidden_size
        wall, cpu = tokens_per_second(arch, args.batch, args.seq_len, args.seconds, args.chunk or None)
        print(json.dumps({"shape": name, "describe": arch.describe(), "params": n, "embedding_share": round(embed / n, 3),
                          "bf16_mb": round(2 * n / 1e6, 1), "batch": args.batch, "seq_len": args.seq_len,
                          "threads": args.threads, "chunk": args.chunk, "tokens_per_s": round(wall, 1),
                          "tokens_per_cpu_s": round(cpu, 1)}), flush=True)


if __name__ == "__main__":
    main()
