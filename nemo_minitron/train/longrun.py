"""What a training run spread over many sessions needs beyond ``fit``: a training curve on disk,
held-out bits per byte, a log line a person can read in ``tail -f``, and a bf16 Hugging Face
snapshot written every few hundred steps to a folder that outlives the work folder.

``fit`` already resumes exactly from ``<work>/checkpoints/last.ckpt`` (weights, AdamW state,
scheduler, step, data position). The snapshot is for a machine where the work folder is gone: it
holds the weights in bf16 and ``training_state.json`` (step, tokens, settings), from which a new
run can warm-start (not exact: the optimizer moments are lost and the weights were rounded).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch

from ..atomic import atomic_file, write_text_atomic
from .metrics import micro_batch_loss, validation_loss
from .trainer import PRE_DECAY_CKPT

CURVE_FILE = "curve.jsonl"
STATE_FILE = "training_state.json"


@dataclass(frozen=True)
class HeldOut:
    """A packed held-out set measured at every validation, and its bytes per token (the corpus
    split's, over all its tokens) to turn nats per token into bits per byte."""

    rows: torch.Tensor
    bytes_per_token: float

    def bits_per_byte(self, nats_per_token: float) -> float:
        return nats_per_token / (math.log(2) * self.bytes_per_token)


def read_curve(path: str | Path) -> list[dict[str, Any]]:
    """The records of a curve file, the last one of each (kind, step) kept: after a resume the steps
    since the last checkpoint are trained (and logged) again, and the repeat is what the model is."""
    records: dict[tuple[str, int], dict[str, Any]] = {}
    path = Path(path)
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                records[(record["kind"], record["step"])] = record
    return sorted(records.values(), key=lambda r: (r["step"], r["kind"]))


class TrainingCurve(L.Callback):
    """Appends to ``<work>/curve.jsonl``: a ``train`` record every ``every`` optimizer steps (loss,
    LR, tokens, tokens/s since the last record) and a ``val`` record at each validation (the
    validation loss and its bits per byte, and those of each ``held_out`` set); prints one line each.
    """

    def __init__(self, path: Path, every: int, tokens_per_step: int, max_steps: int,
                 val: Optional[HeldOut] = None, held_out: Optional[Mapping[str, HeldOut]] = None,
                 batch_size: int = 8, first_step: int = 0) -> None:
        self.path, self.every, self.tokens_per_step, self.max_steps = Path(path), every, tokens_per_step, max_steps
        self.first_step = first_step  # steps are counted from the start of the run this one continues
        self.val, self.held_out, self.batch_size = val, dict(held_out or {}), batch_size
        self._last_step: Optional[int] = None
        self._last_time = time.perf_counter()
        self._losses: list[float] = []

    def _write(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(record) + "\n")

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last_step = trainer.global_step + self.first_step  # a resumed run starts later
        self._last_time = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = micro_batch_loss(trainer, outputs)
        if loss is not None:
            self._losses.append(loss)
        step = trainer.global_step + self.first_step
        if not trainer.is_global_zero or step == self._last_step or step % self.every:
            return
        now = time.perf_counter()
        steps_done = step - (self._last_step or 0)
        record = {
            "kind": "train", "step": step, "tokens": step * self.tokens_per_step,
            "train_loss": sum(self._losses) / max(1, len(self._losses)),
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "tokens_per_s": round(steps_done * self.tokens_per_step / max(now - self._last_time, 1e-9), 1),
            "time": time.time(),
        }
        self._write(record)
        left = (self.first_step + self.max_steps - step) * self.tokens_per_step / max(record["tokens_per_s"], 1e-9)
        print(f"[train] step {step}/{self.first_step + self.max_steps} tokens {record['tokens'] / 1e6:.2f}M loss "
              f"{record['train_loss']:.3f} lr {record['lr']:.2e} {record['tokens_per_s']:.0f} tok/s "
              f"eta {left / 3600:.1f} h", flush=True)
        self._last_step, self._last_time, self._losses = step, now, []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        step = trainer.global_step + self.first_step
        record: dict[str, Any] = {"kind": "val", "step": step, "tokens": step * self.tokens_per_step,
                                  "time": time.time()}
        val_loss = trainer.callback_metrics.get("val_loss")
        if val_loss is not None:
            record["val_loss"] = float(val_loss)
            if self.val is not None:
                record["val_bpb"] = self.val.bits_per_byte(float(val_loss))
        model = getattr(pl_module, "model", pl_module)
        for name, held in self.held_out.items():
            loss = validation_loss(model, held.rows, self.batch_size)
            record[f"{name}_loss"], record[f"{name}_bpb"] = loss, held.bits_per_byte(loss)
        pl_module.train()
        self._write(record)
        shown = " ".join(f"{k} {v:.4f}" for k, v in record.items() if k.endswith(("_loss", "_bpb")))
        print(f"[val] step {step}: {shown}", flush=True)
        self._last_time = time.perf_counter()  # validation time is not training throughput


def write_curve(path: Path, records: list[dict[str, Any]]) -> None:
    """Write ``records`` as a curve file (one JSON object per line, what :func:`read_curve` reads), atomically."""
    write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in records))


def read_state(folder: Path) -> dict[str, Any]:
    """The ``training_state.json`` of a snapshot folder (step, settings, versions)."""
    return json.loads((Path(folder) / STATE_FILE).read_text())


def continued_curve(history: Optional[Path], curve: Path, first_step: int) -> list[dict[str, Any]]:
    """A continued run's whole curve: the records of the run it continued (``history``, a curve
    file) up to ``first_step``, then its own after it. Either file may be missing. A history that
    stops short of ``first_step`` (the shipped teacher, when what replaces it descends from a later,
    unshipped run) is continued from ``curve``'s own records after its end, when ``curve`` has them."""
    earlier = [r for r in read_curve(history) if r["step"] <= first_step] if history else []
    end = max((r["step"] for r in earlier), default=first_step)
    return earlier + [r for r in read_curve(curve) if r["step"] > end]


def rewind_to_pre_decay(work: Path, first_step: int = 0) -> int:
    """Make a WSD run's newest pre-decay checkpoint the one a rerun resumes from; returns its step
    (counted like the curve's).

    For a run that should train longer than planned after its decay has begun: rerun with a larger
    ``max_steps`` and the constant-LR phase continues from where the decay started, instead of
    climbing back from the decayed LR (``fit`` keeps that checkpoint, ``trainer.KeepCheckpointAt``).
    Nothing is deleted: ``last.ckpt`` becomes ``last-before-rewind-<step>.ckpt`` and the curve's
    records after the step move to ``curve-decayed-<step>.jsonl``. ``first_step``: where a
    warm-started run's step count starts (the curve's steps count from the run it continued).
    """
    folder = Path(work) / "checkpoints"
    prefix, suffix = PRE_DECAY_CKPT.split("{step}")
    found = sorted((int(p.name[len(prefix):-len(suffix)]), p) for p in folder.glob(PRE_DECAY_CKPT.format(step="*")))
    if not found:
        raise FileNotFoundError(f"no {PRE_DECAY_CKPT.format(step='<step>')} in {folder}: it is written when a WSD "
                                "schedule's decay begins, so this run has not reached its decay")
    step, source = found[-1]
    cut = first_step + step
    last, kept = folder / "last.ckpt", folder / f"last-before-rewind-{cut}.ckpt"
    if kept.exists():
        raise FileExistsError(f"{kept} exists: this run was rewound to step {cut} before; move it away first")
    if last.is_file():
        last.rename(kept)
    with atomic_file(last) as tmp:
        shutil.copyfile(source, tmp)
    curve = Path(work) / CURVE_FILE
    records = read_curve(curve)
    write_curve(Path(work) / f"curve-decayed-{cut}.jsonl", [r for r in records if r["step"] > cut])
    write_curve(curve, [r for r in records if r["step"] <= cut])
    return cut


class HFSnapshot(L.Callback):
    """Every ``every`` optimizer steps and at the end of training, a bf16 copy of the trained model
    as an ordinary HF checkpoint in ``folder`` (atomically replaced), with ``training_state.json``
    (``state()`` plus the step) and the training curve so far (for a continued run, preceded by
    ``history``: the curve of the run it continued, up to ``first_step``).

    Refuses, before training starts, a non-empty ``folder`` that is not an earlier snapshot.
    """

    def __init__(self, folder: Path, every: int, tokenizer: Any, state: Callable[[], dict[str, Any]],
                 curve: Optional[Path] = None, dtype: torch.dtype = torch.bfloat16, first_step: int = 0,
                 history: Optional[Path] = None) -> None:
        folder = Path(folder)
        if folder.is_dir() and any(folder.iterdir()) and not (folder / STATE_FILE).is_file():
            raise FileExistsError(f"snapshot folder {folder} holds files that are not a training snapshot "
                                  f"(no {STATE_FILE}); choose another folder")
        self.folder, self.every, self.tokenizer, self.state = folder, every, tokenizer, state
        self.curve, self.dtype, self.first_step, self.history = curve, dtype, first_step, history
        self._saved_step: Optional[int] = None

    def save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from nemo_minitron.models import save_checkpoint

        step = trainer.global_step + self.first_step
        if not trainer.is_global_zero or step == self._saved_step:
            return
        model = copy.deepcopy(getattr(pl_module, "model", pl_module)).eval()
        state = {**self.state(), "step": step, "dtype": str(self.dtype).removeprefix("torch."), "time": time.time()}

        def extra(tmp: Path) -> None:
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1, default=str) + "\n")
            if self.curve is not None:
                write_curve(tmp / CURVE_FILE, continued_curve(self.history, self.curve, self.first_step))

        save_checkpoint(model, self.folder, tokenizer=self.tokenizer, extra=extra, dtype=self.dtype)
        self._saved_step = step
        print(f"[snapshot] step {step}: bf16 checkpoint -> {self.folder}", flush=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        step = trainer.global_step + self.first_step
        if trainer.global_step and step % self.every == 0:
            self.save(trainer, pl_module)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A validation at a snapshot's step runs after the snapshot was written: add its record
        to the snapshot's curve (``TrainingCurve``, earlier in the callback list, has logged it)."""
        step = trainer.global_step + self.first_step
        if trainer.is_global_zero and not trainer.sanity_checking and self.curve is not None \
                and step == self._saved_step and (self.folder / CURVE_FILE).is_file():
            write_curve(self.folder / CURVE_FILE, continued_curve(self.history, self.curve, self.first_step))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.save(trainer, pl_module)
