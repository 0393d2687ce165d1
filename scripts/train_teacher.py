"""Train (or continue training) the shipped teacher: corpus -> tokenizer -> resumable pretraining.

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 nice -n 5 python scripts/train_teacher.py --run-dir runs/teacher

1. The teacher corpus (``nemo_minitron.data.teacher_corpus``; fetched and cleaned once, cached).
2. Its tokenizer: an 8192-token byte-level BPE trained on the training split, saved in the package
   (``nemo_minitron/data/english-bpe-8k``) unless it is there already (``--retrain-tokenizer``).
3. ``pretrain`` with ``recipes.teacher`` (arch "teacher", WSD schedule), its work folder (Lightning
   checkpoints, ``curve.jsonl``) under ``--run-dir``, and a bf16 HF snapshot of the model every
   ``--snapshot-every`` steps into ``--snapshot-dir`` (by default the folder the teacher ships in).

Stop it any time (kill, Ctrl-C, end of session): the same command resumes from the last checkpoint
(every 20 steps) with the same data and schedule. ``--max-steps N`` lengthens (or shortens) the run;
this is exact as long as the schedule's decay has not begun (it starts ``optim.decay_steps`` before
the end). One thread by default (``--threads``), so other work keeps the rest of the machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from nemo_minitron.data.teacher_corpus import load_teacher_corpus, manifest_table
from nemo_minitron.data.tokenizer import TEACHER_TOKENIZER_DIR, TEACHER_VOCAB, train_bpe_tokenizer

#: Where the teacher ships: inside the package next to its tokenizer, so a wheel installs it too.
TEACHER_DIR = Path(__file__).resolve().parent.parent / "nemo_minitron" / "data" / "teacher"
MANIFEST_NAME = "corpus_manifest.json"


def build_tokenizer(force: bool) -> None:
    """Train the BPE on the corpus's training split and save it with the corpus manifest."""
    from nemo_minitron.atomic import atomic_directory

    if (TEACHER_TOKENIZER_DIR / "tokenizer.json").is_file() and not force:
        print(f"[teacher] tokenizer: {TEACHER_TOKENIZER_DIR} (exists; --retrain-tokenizer rebuilds it)")
        return
    corpus = load_teacher_corpus()
    print(manifest_table(corpus.manifest))
    start = time.perf_counter()
    tokenizer = train_bpe_tokenizer(corpus.splits().train, TEACHER_VOCAB)
    with atomic_directory(TEACHER_TOKENIZER_DIR) as tmp:
        tokenizer.save_pretrained(tmp)
        (tmp / MANIFEST_NAME).write_text(json.dumps(corpus.manifest, indent=1) + "\n")
    print(f"[teacher] trained a {len(tokenizer)}-token BPE in {time.perf_counter() - start:.0f} s -> "
          f"{TEACHER_TOKENIZER_DIR}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/teacher"),
                        help="work folder (checkpoints, curve) and the final fp32 checkpoint (<run-dir>/final)")
    parser.add_argument("--max-steps", type=int, default=None, help="override the recipe's train.max_steps")
    parser.add_argument("--snapshot-dir", type=Path, default=TEACHER_DIR)
    parser.add_argument("--snapshot-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (intra-op)")
    parser.add_argument("--tokenizer-only", action="store_true", help="build the corpus and tokenizer, then stop")
    parser.add_argument("--retrain-tokenizer", action="store_true")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    build_tokenizer(args.retrain_tokenizer)
    if args.tokenizer_only:
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from recipes.teacher import TEACHER_OPTIM, TEACHER_TRAIN

    from nemo_minitron.stages.pretrain import pretrain, read_summary

    run_dir = args.run_dir.expanduser().resolve()
    train = dataclasses.replace(TEACHER_TRAIN, work_dir=str(run_dir / "work"), progress=False,
                                max_steps=args.max_steps or TEACHER_TRAIN.max_steps)
    final = run_dir / "final"
    done = read_summary(final)
    if done is not None and done.get("steps", 0) >= train.max_steps:
        print(f"[teacher] {final} already holds the finished run ({done['steps']} steps)")
        return
    print(f"[teacher] {train.max_steps} steps x {train.global_batch_size} x {train.seq_length} tokens = "
          f"{train.max_steps * train.global_batch_size * train.seq_length / 1e6:.1f}M tokens; "
          f"{torch.get_num_threads()} thread(s); work folder {train.work_dir}", flush=True)
    summary = pretrain(save_path=str(final), arch_name="teacher", corpus="teacher", train=train, optim=TEACHER_OPTIM,
                       snapshot_path=str(args.snapshot_dir), snapshot_every=args.snapshot_every,
                       force=done is not None)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=1, default=str))


if __name__ == "__main__":
    main()
