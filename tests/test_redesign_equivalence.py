"""The redesign (issue #12) changed no number. Pruning: the same tiny prune gives a byte-identical
``pruning_plan.json`` and identical logits. Training: the 20-step distillation of the baseline
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


# =========================================================================== pruning
#: The baseline capture's tiny prune: TINY_ARCH with the default tokenizer's vocabulary, every axis.
CALIB_TEXT = ("The quick brown fox jumps over the lazy dog while the river runs past the old mill. "
              "Scientists measured the temperature of the lake every morning for three years. "
              "A small village on the coast depends on fishing, tourism and a weekly market. ")


def test_prune_reproduces_the_pre_redesign_plan_and_logits(tmp_path):
    """Byte-identical ``pruning_plan.json`` and bit-identical logits (the first 256 vocabulary
    columns of every position, ``tests/golden/pruned_logits_head.safetensors``) for the prune the
    pre-redesign code made."""
    import dataclasses

    import torch
    from safetensors.torch import load_file

    from conftest import TINY_ARCH, make_model
    from nemo_minitron.data.tokenizer import load_default_tokenizer
    from nemo_minitron.models import load_model, save_checkpoint
    from nemo_minitron.prune import PruningConfig
    from nemo_minitron.stages.prune import prune

    arch = dataclasses.replace(TINY_ARCH, vocab_size=32000).validate()
    save_checkpoint(make_model(arch), tmp_path / "model", tokenizer=load_default_tokenizer())
    (tmp_path / "calib.txt").write_text("\n".join(CALIB_TEXT * (k + 1) for k in range(12)) + "\n")
    config = PruningConfig(target_mamba_num_heads=4, target_mamba_head_dim=12, target_ffn_hidden_size=64,
                           target_hidden_size=48, target_num_attention_heads=2, target_num_layers=7)
    prune(str(tmp_path / "model"), str(tmp_path / "pruned"), config, calib_data_path=str(tmp_path / "calib.txt"),
          num_samples=6, seq_length=32, batch_size=4, layer_importance_samples=4, device="cpu")
    plan = (tmp_path / "pruned" / "pruning_plan.json").read_bytes()
    assert plan == (GOLDEN.parent / "pruning_plan.json").read_bytes()
    golden = load_file(str(GOLDEN.parent / "pruned_logits_head.safetensors"))
    with torch.no_grad():
        logits = load_model(tmp_path / "pruned").eval()(input_ids=golden["input_ids"], use_cache=False).logits
    assert torch.equal(logits[:, :, :256], golden["logits_head"])
