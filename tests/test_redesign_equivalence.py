"""The training redesign (issue #12) changed no number: the 20-step distillation of the baseline
capture (run on the pre-redesign code; ``tests/golden/distill_curve.json``, ``train/loss`` as
logged every 2 steps) gives the same loss curve through the new ``distill`` stage, within 1e-6."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import save_teacher_and_student
from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill

GOLDEN = Path(__file__).resolve().parent / "golden" / "distill_curve.json"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_distill_reproduces_the_pre_redesign_loss_curve(tmp_path):
    ckpts = save_teacher_and_student(tmp_path / "kd")
    work = tmp_path / "kd_work"
    train = DistillTrain(seq_length=64, micro_batch_size=2, global_batch_size=2, max_steps=20,
                         val_check_interval=20, limit_val_batches=1, progress=False, seed=0, checkpoint_every=20,
                         work_dir=str(work), keep_work=True)
    distill(str(ckpts["teacher"]), str(ckpts["student"]), str(tmp_path / "kd_out"), train=train,
            optim=DistillOptim(warmup_steps=2, lr=1e-3))
    losses = {}
    for f in sorted((work / "logs").glob("version_*/metrics.csv")):
        with f.open() as handle:
            for row in csv.DictReader(handle):
                if row.get("train/loss"):
                    losses[str(int(row["step"]))] = float(row["train/loss"])
    golden = json.loads(GOLDEN.read_text())
    assert sorted(losses, key=int) == sorted(golden, key=int)
    for step, value in golden.items():
        assert losses[step] == pytest.approx(value, abs=1e-6), step
