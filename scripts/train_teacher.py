"""Train (or continue training) the shipped teacher: corpus -> tokenizer -> resumable pretraining.

    OMP_WAIT_POLICY=PASSIVE HF_HUB_OFFLINE=1 nice -n 5 python scripts/train_teacher.py --run-dir runs/teacher

1. The teacher corpus (``nemo_minitron.data.teacher_corpus``; fetched and cleaned once, cached).
2. Its tokenizer: an 8192-token byte-level BPE trained on the training split, saved in the package
   (``nemo_minitron/data/english-bpe-8k``) unless it is there already (``--retrain-tokenizer``).
3. ``pretrain`` with ``recipes.teacher`` (arch "teacher", WSD schedule), its work folder (Lightning
   checkpoints, ``curve.jsonl``) under ``--run-dir``, and a bf16 HF snapshot of the model every
   ``--snapshot-every`` steps into ``--snapshot-dir`` (default ``<run-dir>/snapshots``; to ship one,
   ship one with ``--ship``: it replaces ``nemo_minitron/data/teacher``, the package's teacher).

Stop it any time (kill, Ctrl-C, end of session): the same command resumes from the last checkpoint
(every 20 steps) with the same data and schedule. ``--max-steps N`` lengthens (or shortens) the run;
this is exact as long as the schedule's decay has not begun (it starts ``optim.decay_steps`` before
the end). One thread by default (``--threads``), so other work keeps the rest of the machine;
``--devices 2`` trains in two DDP processes of one thread each (2.1x the tokens/s of one on this
2-core machine, where 2 threads in one process gain nothing) with the same rows per step.

On a machine without the work folder (a fresh checkout) but with a snapshot in ``--warm-start-from``
(default: the shipped teacher), the
same command warm-starts from the snapshot: its bf16 weights (rounded, so not the exact fp32 ones),
a fresh AdamW state (re-estimated during a ``WARM_RESTART_WARMUP``-step warmup to the same peak LR),
the data from the snapshot's step on, and the rest of the schedule, decay included, at the end of the
same ``max_steps``. The plan is kept in ``<run-dir>/warm_start.json`` so that an interrupted warm run
resumes exactly like any other.

A snapshot whose decay is done (the shipped teacher) is continued best by a *second decay*:
``--rewarm-lr 1e-3 --min-lr-ratio 0.05 --max-steps 3200`` warms up to 1e-3 (not the recipe's peak, which
would undo much of the first decay) and decays linearly over all the remaining steps to 5e-5. These
choices are recorded in the plan too, so the resume needs only ``--run-dir``.

A teacher that more passes no longer improve can grow instead: ``--widen-ffn 2304`` (with a warm
start) widens every MLP of the snapshot to that many neurons, the new ones reading random rows and
writing zero columns, so training starts from exactly the snapshot's logits (``models.widen``);
recorded in the plan like the second decay.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from nemo_minitron.data.shipped_teacher import SHIPPED_TEACHER_DIR
from nemo_minitron.data.teacher_corpus import load_teacher_corpus, manifest_table
from nemo_minitron.data.tokenizer import TEACHER_TOKENIZER_DIR, TEACHER_VOCAB, train_bpe_tokenizer

MANIFEST_NAME = "corpus_manifest.json"
WARM_START_FILE = "warm_start.json"
WARM_RESTART_WARMUP = 20


def recorded_plan(run_dir: Path) -> dict | None:
    """The warm start this run folder recorded (``warm_start.json``), None for a run from scratch."""
    plan_file = run_dir / WARM_START_FILE
    return json.loads(plan_file.read_text()) if plan_file.is_file() else None


def warm_start_plan(run_dir: Path, snapshot_dir: Path, max_steps: int, second_decay: dict | None = None,
                    ffn_hidden_size: int | None = None) -> dict | None:
    """How this run continues: None for a fresh run or an exact resume (the work folder has a
    checkpoint); else ``{"first_step", "init_from"}`` from a snapshot (copied into the run folder,
    since new snapshots replace it), with ``second_decay`` (``{"lr", "min_lr_ratio"}``) and the widened
    MLPs' ``ffn_hidden_size`` when given."""
    import shutil

    from nemo_minitron.train.longrun import STATE_FILE, read_state

    recorded = recorded_plan(run_dir)
    if recorded is not None:
        if second_decay and recorded.get("second_decay") != second_decay:
            raise SystemExit(f"{run_dir / WARM_START_FILE} records second_decay={recorded.get('second_decay')}, "
                             f"not {second_decay}: resume without --rewarm-lr/--min-lr-ratio, or use a new --run-dir")
        if ffn_hidden_size and recorded.get("ffn_hidden_size") != ffn_hidden_size:
            raise SystemExit(f"{run_dir / WARM_START_FILE} records ffn_hidden_size={recorded.get('ffn_hidden_size')}, "
                             f"not {ffn_hidden_size}: resume without --widen-ffn, or use a new --run-dir")
        return recorded
    if (run_dir / "work" / "checkpoints" / "last.ckpt").is_file() or not (snapshot_dir / STATE_FILE).is_file():
        return None
    step = int(read_state(snapshot_dir)["step"])
    if step + WARM_RESTART_WARMUP >= max_steps:
        raise SystemExit(f"the snapshot in {snapshot_dir} is at step {step} of {max_steps}: nothing left to train "
                         "(raise --max-steps to continue it)")
    init = run_dir / "init"
    shutil.rmtree(init, ignore_errors=True)
    shutil.copytree(snapshot_dir, init)
    plan = {"first_step": step, "init_from": str(init), "snapshot": str(snapshot_dir), "time": time.time()}
    if second_decay:
        plan["second_decay"] = second_decay
    if ffn_hidden_size:
        plan["ffn_hidden_size"] = ffn_hidden_size
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / WARM_START_FILE).write_text(json.dumps(plan, indent=1) + "\n")
    print(f"[teacher] no checkpoint in {run_dir / 'work'}: warm start from the step-{step} snapshot {snapshot_dir}")
    return plan


def average_snapshots(snapshots: list[Path], out: Path) -> Path:
    """The mean of ``snapshots`` (``models.average``) in ``out``, as a snapshot of the newest one: its
    ``training_state.json`` (with ``averaged_from``: each member's folder and step) and curve."""
    import shutil

    from nemo_minitron.models.average import average_checkpoints
    from nemo_minitron.train.longrun import CURVE_FILE, STATE_FILE, read_state

    try:
        states = [read_state(path) for path in snapshots]
    except FileNotFoundError as error:
        raise SystemExit(f"[teacher] not averaged: {error}") from None
    newest = max(range(len(snapshots)), key=lambda i: int(states[i]["step"]))

    def snapshot_files(folder: Path) -> None:
        state = {**states[newest], "averaged_from": [{"path": str(path.resolve()), "step": int(st["step"])}
                                                     for path, st in zip(snapshots, states)]}
        (folder / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")
        shutil.copy2(snapshots[newest] / CURVE_FILE, folder / CURVE_FILE)

    try:
        return average_checkpoints(snapshots, out, extra=snapshot_files, overwrite=True)
    except (FileNotFoundError, ValueError) as error:
        raise SystemExit(f"[teacher] not averaged: {error}") from None


def run_ffn_hidden_size(plan: dict) -> int:
    """The MLP width this run trains: the plan's ``--widen-ffn``, else that of the snapshot it warm-starts
    from (a widened teacher continues at its width), else the recipe's starting width (a run from scratch
    repeats the shipped teacher's first cycles, docs/teacher.md)."""
    from recipes.teacher import TEACHER_START_FFN

    from nemo_minitron.arch import HybridArch
    from nemo_minitron.models import load_config

    if plan.get("ffn_hidden_size"):
        return plan["ffn_hidden_size"]
    if plan.get("init_from"):
        return HybridArch.from_hf_config(load_config(plan["init_from"])).ffn_hidden_size
    return TEACHER_START_FFN


def warm_start_optim(optim, plan: dict, remaining_steps: int):
    """The schedule of a warm-started run (``optim`` unchanged for a run from scratch): a fresh AdamW
    state needs a short warmup; then the rest of the planned schedule, or with ``second_decay`` its LR
    and a linear decay over every remaining step."""
    if not plan["first_step"]:
        return optim
    warmup, second = WARM_RESTART_WARMUP, plan.get("second_decay") or {}
    decay = remaining_steps - warmup if second else min(optim.decay_steps, remaining_steps - warmup)
    return dataclasses.replace(optim, warmup_steps=warmup, decay_steps=decay, **second)


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
    parser.add_argument("--snapshot-dir", type=Path, default=None, help="default <run-dir>/snapshots")
    parser.add_argument("--warm-start-from", type=Path, default=SHIPPED_TEACHER_DIR,
                        help="a snapshot to continue from when the run folder has no checkpoint")
    parser.add_argument("--rewarm-lr", type=float, default=None,
                        help="warm start only: warm up to this LR and decay linearly over all remaining steps "
                             "(a second decay, for a snapshot whose first decay is done)")
    parser.add_argument("--min-lr-ratio", type=float, default=None,
                        help="with --rewarm-lr: the final LR as a fraction of it (default: the recipe's)")
    parser.add_argument("--widen-ffn", type=int, default=None, metavar="NEURONS",
                        help="warm start only: widen the snapshot's MLPs to this many neurons first, keeping its "
                             "logits (models.widen): more capacity for a teacher that has stopped improving")
    parser.add_argument("--snapshot-every", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (intra-op)")
    parser.add_argument("--devices", type=int, default=1,
                        help="data-parallel processes (Lightning DDP, gloo on the CPU), one core each: the "
                             "same global batch, micro-batches split over them")
    parser.add_argument("--tokenizer-only", action="store_true", help="build the corpus and tokenizer, then stop")
    parser.add_argument("--retrain-tokenizer", action="store_true")
    parser.add_argument("--rewind-to-pre-decay", action="store_true",
                        help="make the checkpoint of the step the LR decay began the one to resume from, then "
                             "stop: the next run with a larger --max-steps trains on at the peak LR from there")
    parser.add_argument("--ship", action="store_true",
                        help="copy the newest snapshot over the shipped teacher (nemo_minitron/data/teacher), then stop")
    parser.add_argument("--ship-average", type=Path, nargs="+", metavar="SNAPSHOT",
                        help="ship the mean of these snapshots' weights (models.average; the newest one's "
                             "training state and curve, the list in averaged_from.json), then stop")
    args = parser.parse_args()
    run_dir = args.run_dir.expanduser().resolve()
    snapshot_dir = args.snapshot_dir or run_dir / "snapshots"
    if args.ship_average:
        args.ship, snapshot_dir = True, average_snapshots(args.ship_average, run_dir / "averaged")
    if args.ship:
        from nemo_minitron.data.shipped_teacher import describe_shipped_teacher, ship_snapshot

        try:
            ship_snapshot(snapshot_dir)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"[teacher] not shipped: {error}") from None
        print(f"[teacher] shipped: {describe_shipped_teacher()} -> {SHIPPED_TEACHER_DIR} (commit it)")
        return

    if args.rewind_to_pre_decay:
        from nemo_minitron.train.longrun import rewind_to_pre_decay

        try:
            step = rewind_to_pre_decay(run_dir / "work", first_step=(recorded_plan(run_dir) or {}).get("first_step", 0))
        except (FileNotFoundError, FileExistsError) as error:
            raise SystemExit(f"[teacher] not rewound: {error}") from None
        print(f"[teacher] rewound to step {step}, where the decay began; continue with a larger --max-steps "
              "(the decay then starts optim.decay_steps before its end: recipes/teacher.py)")
        return

    torch.set_num_threads(args.threads)
    build_tokenizer(args.retrain_tokenizer)
    if args.tokenizer_only:
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from recipes.teacher import TEACHER_OPTIM, TEACHER_TRAIN

    from nemo_minitron.arch import TEACHER
    from nemo_minitron.stages.pretrain import pretrain, read_summary

    max_steps = args.max_steps or TEACHER_TRAIN.max_steps
    final = run_dir / "final"
    done = read_summary(final)
    if done is not None and done.get("first_step", 0) + done.get("steps", 0) >= max_steps:
        print(f"[teacher] {final} already holds the finished run ({done.get('first_step', 0) + done['steps']} steps)")
        return
    if args.min_lr_ratio is not None and args.rewarm_lr is None:
        raise SystemExit("--min-lr-ratio goes with --rewarm-lr (the recipe's own ratio is in recipes/teacher.py)")
    second_decay = None if args.rewarm_lr is None else {
        "lr": args.rewarm_lr,
        "min_lr_ratio": TEACHER_OPTIM.min_lr_ratio if args.min_lr_ratio is None else args.min_lr_ratio}
    plan = (warm_start_plan(run_dir, args.warm_start_from, max_steps, second_decay, args.widen_ffn)
            or {"first_step": 0, "init_from": None})
    for flag, value in (("--rewarm-lr", second_decay), ("--widen-ffn", args.widen_ffn)):
        if value and not plan["first_step"]:
            raise SystemExit(f"{flag} is for a warm start from a snapshot, but {run_dir} resumes its own checkpoint")
    arch = TEACHER.replace(ffn_hidden_size=run_ffn_hidden_size(plan))
    first = plan["first_step"]
    train = dataclasses.replace(TEACHER_TRAIN, work_dir=str(run_dir / "work"), progress=False,
                                max_steps=max_steps - first, devices=args.devices,
                                strategy="ddp" if args.devices > 1 else TEACHER_TRAIN.strategy)
    optim = warm_start_optim(TEACHER_OPTIM, plan, train.max_steps)
    print(f"[teacher] steps {first}..{max_steps} x {train.global_batch_size} x {train.seq_length} tokens = "
          f"{max_steps * train.global_batch_size * train.seq_length / 1e6:.1f}M tokens in all; "
          f"{torch.get_num_threads()} thread(s); work folder {train.work_dir}; peak LR {optim.lr:g}, "
          f"warmup {optim.warmup_steps}, decay over the last {optim.decay_steps} steps to {optim.lr * optim.min_lr_ratio:g}",
          flush=True)
    summary = pretrain(save_path=str(final), arch_name="teacher", arch=arch, corpus="teacher", train=train, optim=optim,
                       snapshot_path=str(snapshot_dir), snapshot_every=args.snapshot_every,
                       force=done is not None, init_from=plan["init_from"], first_step=first)
    print(json.dumps({k: v for k, v in summary.items() if not isinstance(v, (dict, list))}, indent=1, default=str))


if __name__ == "__main__":
    main()
