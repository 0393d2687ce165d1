"""Logit distillation: the KD loss, the Lightning module, resume exactness and DDP parity.

The loss is checked against numbers worked out by hand on a 2-token, 3-word vocabulary, and
the chunked custom-autograd version against the naive full-softmax formula. The stage tests
run the ``distill`` stage on a 2.1M-parameter NemotronH (hidden 32, the 32000-token default
tokenizer, 64-token rows) for 6 steps: uninterrupted, interrupted at every kind of step and
resumed (with and without gradient accumulation), and with Lightning DDP on 2 CPU processes
(gloo) in a subprocess.
"""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file
from torch.utils.data import DataLoader

from conftest import STAGE_ARCH, TINY_ARCH, make_model, save_teacher_and_student
from nemo_minitron.losses import kd_loss, kd_loss_reference, shifted_cross_entropy, shifted_cross_entropy_chunked
from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill
from nemo_minitron.stages.renames import RenamedArgumentError
from nemo_minitron.train import DistillationModule, OptimConfig, PackedRows, VocabularyMismatchError

ROOT = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# =========================================================================== the loss, by hand
#
# Vocabulary {w0, w1, w2}, 2 tokens. Logits are logs of simple numbers so the softmaxes are exact:
#
#   token 1  teacher (ln 4, 0, 0)      T=1: (4,1,1)/6 = (2/3, 1/6, 1/6)   T=2: (2,1,1)/4 = (1/2, 1/4, 1/4)
#            student (0, ln 4, 0)      T=1: (1/6, 2/3, 1/6)               T=2: (1/4, 1/2, 1/4)
#   token 2  teacher (0, 0, 0)         T=1 and T=2: (1/3, 1/3, 1/3)
#            student (ln 4, ln 4, 0)   T=1: (4,4,1)/9 = (4/9, 4/9, 1/9)   T=2: (2,2,1)/5 = (2/5, 2/5, 1/5)
LN4 = math.log(4.0)
TEACHER = [[LN4, 0.0, 0.0], [0.0, 0.0, 0.0]]
STUDENT = [[0.0, LN4, 0.0], [LN4, LN4, 0.0]]
PROBS = {  # (teacher, student) distributions per token, per temperature
    1.0: [([2 / 3, 1 / 6, 1 / 6], [1 / 6, 2 / 3, 1 / 6]), ([1 / 3, 1 / 3, 1 / 3], [4 / 9, 4 / 9, 1 / 9])],
    2.0: [([1 / 2, 1 / 4, 1 / 4], [1 / 4, 1 / 2, 1 / 4]), ([1 / 3, 1 / 3, 1 / 3], [2 / 5, 2 / 5, 1 / 5])],
}
# KL(p || q) = sum_i p_i ln(p_i / q_i), worked out:
#   T=1 token 1: forward = 2/3 ln 4 + 1/6 ln(1/4) + 0 = 1/2 ln 4 = ln 2 = 0.693147; reverse the same (mirror image)
#   T=1 token 2: forward = 1/3 (2 ln(3/4) + ln 3) = 1/3 ln(27/16) = 0.174416
#                reverse = 8/9 ln(4/3) + 1/9 ln(1/3) = 0.255717 - 0.122068 = 0.133649
#   T=2 token 1: forward = 1/2 ln 2 + 1/4 ln(1/2) = 1/4 ln 2 = 0.173287; reverse the same
#   T=2 token 2: forward = 1/3 (2 ln(5/6) + ln(5/3)) = 1/3 ln(125/108) = 0.048728
#                reverse = 4/5 ln(6/5) + 1/5 ln(3/5) = 0.145857 - 0.102165 = 0.043692
HAND_KL = {
    ("forward", 1.0): [0.693147, 0.174416],
    ("reverse", 1.0): [0.693147, 0.133649],
    ("forward", 2.0): [0.173287, 0.048728],
    ("reverse", 2.0): [0.173287, 0.043692],
}


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_hand_probabilities_match_the_logits():
    for temperature, tokens in PROBS.items():
        for i, (pt, ps) in enumerate(tokens):
            assert torch.softmax(torch.tensor(TEACHER[i]) / temperature, -1).tolist() == pytest.approx(pt, abs=1e-7)
            assert torch.softmax(torch.tensor(STUDENT[i]) / temperature, -1).tolist() == pytest.approx(ps, abs=1e-7)
    # the worked-out per-token values follow from the written-out probabilities
    for (direction, temperature), values in HAND_KL.items():
        for (pt, ps), value in zip(PROBS[temperature], values):
            kl = _kl(pt, ps) if direction == "forward" else _kl(ps, pt)
            assert kl == pytest.approx(value, abs=1e-6)
    assert HAND_KL[("forward", 1.0)][0] == pytest.approx(math.log(2), abs=1e-6)
    assert HAND_KL[("forward", 1.0)][1] == pytest.approx(math.log(27 / 16) / 3, abs=1e-6)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("loss_fn", [kd_loss, kd_loss_reference], ids=["chunked", "reference"])
def test_kd_loss_matches_hand_computation(direction, temperature, scale, loss_fn):
    s, t = torch.tensor([STUDENT]), torch.tensor([TEACHER])  # [1, 2, 3]
    expected = sum(HAND_KL[(direction, temperature)]) / 2 * (temperature**2 if scale else 1.0)
    # e.g. forward T=1: (0.693147 + 0.174416) / 2 = 0.433782; forward T=2 scaled: 4 * 0.111007 = 0.444030
    loss = loss_fn(s, t, temperature=temperature, direction=direction, scale_by_temperature_sq=scale)
    assert loss.item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("direction", ["forward", "reverse"])
@pytest.mark.parametrize("loss_fn", [kd_loss, kd_loss_reference], ids=["chunked", "reference"])
def test_kd_loss_masked_token_does_not_count(direction, loss_fn):
    s, t = torch.tensor([STUDENT]), torch.tensor([TEACHER])
    token1, token2 = HAND_KL[(direction, 1.0)]
    assert loss_fn(s, t, torch.tensor([[1, 0]]), direction=direction).item() == pytest.approx(token1, abs=1e-5)
    assert loss_fn(s, t, torch.tensor([[0, 1]]), direction=direction).item() == pytest.approx(token2, abs=1e-5)
    # a masked token may hold anything: wild logits there change nothing
    wild = s.clone()
    wild[0, 0] = torch.tensor([50.0, -50.0, 7.0])
    assert loss_fn(wild, t, torch.tensor([[False, True]]), direction=direction).item() == pytest.approx(token2, abs=1e-5)


def test_kd_loss_gradient_matches_hand_computation():
    """Forward KL: d loss / d student logits = (p_s - p_t) / T per token, times its weight 1/2."""
    s = torch.tensor([STUDENT], requires_grad=True)
    kd_loss(s, torch.tensor([TEACHER]), chunk_tokens=1).backward()
    # token 1: ((1/6, 2/3, 1/6) - (2/3, 1/6, 1/6)) / 2 = (-1/4, 1/4, 0)
    # token 2: ((4/9, 4/9, 1/9) - (1/3, 1/3, 1/3)) / 2 = (1/18, 1/18, -1/9)
    expected = torch.tensor([[[-1 / 4, 1 / 4, 0.0], [1 / 18, 1 / 18, -1 / 9]]])
    torch.testing.assert_close(s.grad, expected, atol=1e-6, rtol=0)
    # at T=2 with T^2 scaling: 4 * (p_s - p_t) / 2 / 2 = (p_s - p_t) at T=2
    s.grad = None
    kd_loss(s, torch.tensor([TEACHER]), temperature=2.0).backward()
    expected_t2 = torch.tensor([[[1 / 4 - 1 / 2, 1 / 2 - 1 / 4, 0.0], [2 / 5 - 1 / 3, 2 / 5 - 1 / 3, 1 / 5 - 1 / 3]]])
    torch.testing.assert_close(s.grad, expected_t2, atol=1e-6, rtol=0)


# =========================================================================== chunked == naive
def _random_logits(shape, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(shape, generator=gen)).to(dtype)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("chunk", [1, 3, 1000])  # 1000 > the 10 tokens
def test_chunked_kd_equals_reference_value_and_gradient(dtype, tol, chunk):
    shape = (2, 5, 37)
    mask = torch.tensor([[1, 1, 0, 1, 1], [0, 1, 1, 1, 0]])
    for direction in ("forward", "reverse"):
        for temperature, m in ((1.0, None), (2.0, mask), (0.5, mask.bool())):
            student = _random_logits(shape, dtype, 1)
            teacher = _random_logits(shape, dtype, 2)
            ours_in = student.clone().requires_grad_(True)
            ref_in = student.clone().requires_grad_(True)
            ours = kd_loss(ours_in, teacher, m, temperature=temperature, direction=direction, chunk_tokens=chunk)
            ref = kd_loss_reference(ref_in, teacher, m, temperature=temperature, direction=direction)
            torch.testing.assert_close(ours, ref, atol=tol, rtol=tol)
            assert ours.dtype == torch.float32
            (ours * 3.0).backward()  # a non-unit upstream gradient must be carried through
            (ref * 3.0).backward()
            assert ours_in.grad.dtype == dtype
            torch.testing.assert_close(ours_in.grad.float(), ref_in.grad.float(), atol=tol, rtol=tol)
            if m is not None:  # masked tokens get no gradient at all
                assert ours_in.grad[m == 0].abs().max().item() == 0.0


def test_kd_loss_is_zero_when_student_equals_teacher():
    logits = _random_logits((3, 4, 50), torch.float32, 3)
    for direction in ("forward", "reverse"):
        student = logits.clone().requires_grad_(True)
        loss = kd_loss(student, logits, temperature=2.0, direction=direction, chunk_tokens=5)
        loss.backward()
        assert abs(loss.item()) < 1e-6
        assert student.grad.abs().max().item() < 1e-7


def test_kd_loss_does_not_backpropagate_into_the_teacher():
    student = _random_logits((2, 3, 11), torch.float32, 4).requires_grad_(True)
    teacher = _random_logits((2, 3, 11), torch.float32, 5).requires_grad_(True)
    kd_loss(student, teacher).backward()
    assert student.grad is not None and teacher.grad is None


def test_kd_loss_errors():
    s = torch.zeros(2, 3, 10)
    with pytest.raises(ValueError, match="share a vocabulary"):
        kd_loss(s, torch.zeros(2, 3, 11))
    with pytest.raises(ValueError, match="differ"):
        kd_loss(s, torch.zeros(2, 4, 10))
    with pytest.raises(ValueError, match="selects no token"):
        kd_loss(s, s.clone(), mask=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="direction"):
        kd_loss(s, s.clone(), direction="backward")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, s.clone(), temperature=0.0)
    with pytest.raises(ValueError, match="mask has 5 entries"):
        kd_loss(s, s.clone(), mask=torch.ones(5))
    with pytest.raises(ValueError, match="chunk_tokens"):
        kd_loss(s, s.clone(), chunk_tokens=0)


# =========================================================================== DistillationModule
def _rows(n: int, seq: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, vocab, (n, seq), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("chunk", [None, 1, 7, 10_000])
def test_chunked_cross_entropy_equals_shifted_cross_entropy(chunk):
    logits = _random_logits((2, 9, 23), torch.float32, 6)
    ids = _rows(2, 9, 23, seed=1)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0
    for m in (None, mask):
        expected = shifted_cross_entropy(logits, ids, m)
        torch.testing.assert_close(shifted_cross_entropy_chunked(logits, ids, m, chunk), expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("ce_weight", [0.0, 0.5])
def test_module_kd_is_the_shifted_kd_and_logs_ce(ce_weight):
    teacher, student = make_model(TINY_ARCH, seed=0), make_model(TINY_ARCH, seed=1, perturb_seed=7)
    module = DistillationModule(student, teacher, temperature=2.0, ce_weight=ce_weight)
    ids = _rows(2, 16, TINY_ARCH.vocab_size)
    mask = torch.ones_like(ids)
    mask[0, 5:9] = 0
    out = module._losses({"input_ids": ids, "loss_mask": mask})
    with torch.no_grad():
        s, t = student(input_ids=ids).logits, teacher(input_ids=ids).logits
    kd = kd_loss_reference(s[:, :-1], t[:, :-1], mask[:, 1:], temperature=2.0)
    ce = shifted_cross_entropy(s, ids, mask)
    torch.testing.assert_close(out["kd"], kd, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["student_ce"], ce, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["teacher_ce"], shifted_cross_entropy(t, ids, mask), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["loss"].detach(), kd + ce_weight * ce, atol=1e-5, rtol=1e-5)
    assert out["loss"].requires_grad


def test_module_trains_only_the_student_and_never_saves_the_teacher(tmp_path):
    teacher, student = make_model(TINY_ARCH, seed=0), make_model(TINY_ARCH, seed=1, perturb_seed=7)
    teacher.train()  # the module must put it in eval mode itself
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    module = DistillationModule(student, teacher, optim=OptimConfig(lr=1e-2, warmup_steps=1), total_steps=3)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not any(k.startswith("teacher") or k.startswith("_teacher") for k in module.state_dict())
    assert set(module.state_dict()) == {f"student.{k}" for k in student.state_dict()}

    loader = DataLoader(PackedRows(_rows(6, 16, TINY_ARCH.vocab_size)), batch_size=2)
    trainer = L.Trainer(max_steps=3, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.global_step == 3

    # only the student's parameters are optimised: all of them, and nothing else
    optimised = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimised == {id(p) for p in student.parameters()}
    assert optimised.isdisjoint({id(p) for p in teacher.parameters()})
    # the teacher is untouched, frozen and in eval mode; the student moved
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(v, teacher_before[k], atol=0, rtol=0)
    assert all(not p.requires_grad for p in teacher.parameters())
    assert not teacher.training
    assert any(not torch.equal(v, student_before[k]) for k, v in student.state_dict().items())

    # a Lightning checkpoint holds the student only
    path = tmp_path / "module.ckpt"
    trainer.save_checkpoint(path)
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    assert set(ckpt["state_dict"]) == {f"student.{k}" for k in student.state_dict()}
    assert "teacher" not in ckpt.get("hyper_parameters", {}) and "student" not in ckpt.get("hyper_parameters", {})


def test_module_refuses_a_different_vocabulary():
    teacher = make_model(TINY_ARCH)
    student = make_model(TINY_ARCH.replace(vocab_size=1024))
    with pytest.raises(VocabularyMismatchError, match="vocab_size=1024.*vocab_size=1000"):
        DistillationModule(student, teacher)


# =========================================================================== the distill stage
STEPS = 6
STAGE_KW = dict(seq_length=64, global_batch_size=2, max_steps=STEPS, val_check_interval=STEPS, limit_val_batches=1,
                progress=False, seed=0)
#: WSD, so that every parity test (resume at any step, DDP) also runs the pre-decay checkpoint's save.
OPTIM = DistillOptim(warmup_steps=2, lr=1e-3, schedule="wsd", decay_steps=2)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    return save_teacher_and_student(tmp_path_factory.mktemp("distill"))


def _distill(ckpts: dict[str, Path], name: str, **overrides) -> dict:
    """The stage with the test's settings; the work folder is kept (its logs hold the per-step losses)."""
    kw = {**STAGE_KW, "micro_batch_size": 2, "checkpoint_every": STEPS, "keep_work": True, **overrides}
    train = DistillTrain(work_dir=str(ckpts["root"] / f"{name}.work"), **kw)
    return distill(str(ckpts["teacher"]), str(ckpts["student"]), str(ckpts["root"] / f"{name}.out"), train=train,
                   optim=OPTIM)


def _train_losses(work_dir: Path) -> dict[int, float]:
    """Per-step ``train/loss`` from every CSV log of a work folder (a resumed run has several)."""
    losses: dict[int, float] = {}
    for csv_file in sorted((work_dir / "logs").glob("version_*/metrics.csv")):
        with csv_file.open() as f:
            for row in csv.DictReader(f):
                if row.get("train/loss"):
                    assert int(row["step"]) not in losses, f"step {row['step']} logged twice"
                    losses[int(row["step"])] = float(row["train/loss"])
    return losses


def _weights(save_path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(save_path / "model.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], atol: float) -> None:
    assert set(a) == set(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=lambda m, k=k: f"{k}: {m}")


@pytest.fixture(scope="module")
def uninterrupted(checkpoints) -> dict:
    """The reference run: 6 steps, micro-batch 2 = global batch 2, one process, no interruption."""
    summary = _distill(checkpoints, "A")
    return {"summary": summary, "losses": _train_losses(checkpoints["root"] / "A.work"),
            "weights": _weights(checkpoints["root"] / "A.out")}


def test_distill_trains_and_saves_a_student_only_checkpoint(checkpoints, uninterrupted):
    summary, losses = uninterrupted["summary"], uninterrupted["losses"]
    assert summary["steps"] == STEPS and summary["finished"] and summary["resumed_from"] is None
    assert summary["tokens"] == STEPS * 2 * 64
    assert sorted(losses) == list(range(STEPS))
    assert losses[STEPS - 1] < losses[0]  # the student moves toward the teacher
    for key in ("train/kd", "train/student_ce", "train/teacher_ce", "tokens_per_sec", "val/kd"):
        assert key in summary["metrics"], key
    out = checkpoints["root"] / "A.out"
    assert (out / "distill_summary.json").is_file() and (out / "tokenizer_config.json").is_file()
    ckpt = torch.load(checkpoints["root"] / "A.work" / "checkpoints" / "last.ckpt", map_location="cpu",
                      weights_only=False)
    assert ckpt["global_step"] == STEPS
    assert ckpt["state_dict"] and all(k.startswith("student.") for k in ckpt["state_dict"])
    # the student moved; the teacher folder is as it was
    before = _weights(checkpoints["student"])
    assert any(not torch.equal(before[k], uninterrupted["weights"][k]) for k in before)


@pytest.fixture(scope="module")
def accumulated(checkpoints) -> dict:
    """Uninterrupted, global batch 2 as 2 accumulated micro-batches of 1."""
    summary = _distill(checkpoints, "C", micro_batch_size=1)
    return {"summary": summary, "losses": _train_losses(checkpoints["root"] / "C.work"),
            "weights": _weights(checkpoints["root"] / "C.out")}


@pytest.mark.parametrize("stop,micro", [(1, 2), (1, 1), (2, 2), (2, 1), (3, 2), (STEPS - 1, 2), (STEPS - 1, 1)],
                         ids=lambda v: str(v))
def test_resume_is_exact_for_every_stop_step(checkpoints, uninterrupted, accumulated, stop, micro):
    """Stopped after ``stop`` steps and rerun: the same per-step losses and final weights as one
    uninterrupted run. (Before the fix, a stop before max_steps / 2 replayed ``stop`` batches.)"""
    reference = uninterrupted if micro == 2 else accumulated
    name = f"R{stop}m{micro}"
    first = _distill(checkpoints, name, micro_batch_size=micro, checkpoint_every=1, stop_after_steps=stop)
    assert first["steps"] == stop and not first["finished"] and first["resumed_from"] is None
    assert not (checkpoints["root"] / f"{name}.out").exists()  # no final student from an unfinished run
    second = _distill(checkpoints, name, micro_batch_size=micro, checkpoint_every=1)
    assert second["finished"] and second["resumed_from"].endswith("last.ckpt")
    assert second["resumed_from_step"] == stop and second["steps"] == STEPS

    resumed = _train_losses(checkpoints["root"] / f"{name}.work")
    assert sorted(resumed) == sorted(reference["losses"]) == list(range(STEPS))
    for step in range(STEPS):
        assert resumed[step] == pytest.approx(reference["losses"][step], abs=1e-6), f"step {step}"
    _assert_same_weights(_weights(checkpoints["root"] / f"{name}.out"), reference["weights"], atol=1e-6)


def test_gradient_accumulation_matches_the_full_micro_batch(uninterrupted, accumulated):
    _assert_same_weights(accumulated["weights"], uninterrupted["weights"], atol=1e-4)
    # the summary reports the loss itself, not the share Lightning back-propagates per micro-batch
    for key in ("loss_first", "loss_last"):
        assert accumulated["summary"][key] == pytest.approx(uninterrupted["summary"][key], rel=1e-3), key


def test_finished_run_removes_its_work_folder_unless_kept(checkpoints, uninterrupted, capsys):
    assert (checkpoints["root"] / "A.work" / "checkpoints" / "last.ckpt").is_file()  # keep_work=True
    summary = _distill(checkpoints, "E", keep_work=False)
    assert summary["finished"] and (checkpoints["root"] / "E.out" / "distill_summary.json").is_file()
    assert not (checkpoints["root"] / "E.work").exists()
    out = capsys.readouterr().out
    assert f"work folder (checkpoints, logs): {checkpoints['root'] / 'E.work'}" in out and "removed" in out
    _assert_same_weights(_weights(checkpoints["root"] / "E.out"), uninterrupted["weights"], atol=0)


def test_old_argument_names_are_refused_with_the_new_name(checkpoints, tmp_path):
    args = (str(checkpoints["teacher"]), str(checkpoints["student"]), str(tmp_path / "out"))
    for old, new in [("max_steps", "train.max_steps"), ("lr", "optim.lr"), ("seq_length", "train.seq_length"),
                     ("micro_batch_size", "train.micro_batch_size"), ("warmup_steps", "optim.warmup_steps"),
                     ("work_dir", "train.work_dir"), ("val_check_interval", "train.val_check_interval")]:
        with pytest.raises(RenamedArgumentError, match=f"'{old}' was renamed to '{new}'"):
            distill(*args, **{old: 2})
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()


def test_ddp_two_cpu_processes_match_one_process(checkpoints, uninterrupted):
    """Lightning DDP (gloo), 2 processes x micro-batch 1 vs 1 process x micro-batch 2, global batch 2."""
    root = checkpoints["root"]
    train = {**STAGE_KW, "micro_batch_size": 1, "checkpoint_every": STEPS, "devices": 2, "strategy": "ddp",
             "accelerator": "cpu", "work_dir": str(root / "D.work"), "keep_work": True}
    kwargs = {"teacher_path": str(checkpoints["teacher"]), "student_path": str(checkpoints["student"]),
              "save_path": str(root / "D.out"), "train": train,
              "optim": {"lr": OPTIM.lr, "warmup_steps": OPTIM.warmup_steps, "schedule": OPTIM.schedule,
                        "decay_steps": OPTIM.decay_steps}}
    result = root / "D.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("LOCAL_RANK", None)
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "ddp_worker.py"), json.dumps(kwargs), str(result)],
                          env=env, cwd=str(root), capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "distributed_backend=gloo" in proc.stdout + proc.stderr
    assert "Starting with 2 processes" in proc.stdout + proc.stderr
    summary = json.loads(result.read_text())
    assert summary["steps"] == STEPS and summary["finished"]

    losses = _train_losses(root / "D.work")  # rank 0's log: train/loss is averaged over both ranks
    assert sorted(losses) == list(range(STEPS))
    for step in range(STEPS):
        assert losses[step] == pytest.approx(uninterrupted["losses"][step], abs=1e-4), f"step {step}"
    _assert_same_weights(_weights(root / "D.out"), uninterrupted["weights"], atol=1e-4)
    assert (root / "D.work" / "checkpoints" / f"pre-decay-{STEPS - OPTIM.decay_steps}.ckpt").is_file()  # both ranks saved it


def test_distill_refuses_a_student_with_another_tokenizer(checkpoints, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from nemo_minitron.models import save_checkpoint

    # same vocabulary *size* as the teacher (so the models alone would pass), different tokens
    vocab = {"[UNK]": 0, **{f"w{i}": i for i in range(1, STAGE_ARCH.vocab_size)}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    other = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    student = tmp_path / "other_student"
    save_checkpoint(make_model(STAGE_ARCH, seed=3), student, tokenizer=other)
    with pytest.raises(VocabularyMismatchError, match="tokenizer"):
        distill(str(checkpoints["teacher"]), str(student), str(tmp_path / "out"),
                train=DistillTrain(max_steps=2, progress=False), optim=DistillOptim(warmup_steps=1))
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.work").exists()


def test_distill_argument_errors(checkpoints, tmp_path):
    args = (str(checkpoints["teacher"]), str(checkpoints["student"]), str(tmp_path / "out"))
    with pytest.raises(ValueError, match="warmup_steps"):
        distill(*args, train=DistillTrain(max_steps=2), optim=DistillOptim(warmup_steps=5))
    with pytest.raises(ValueError, match="stop_after_steps"):
        distill(*args, train=DistillTrain(max_steps=2, stop_after_steps=0), optim=DistillOptim(warmup_steps=1))
    with pytest.raises(ValueError, match="multiple of train.micro_batch_size"):
        distill(*args, train=DistillTrain(max_steps=2, micro_batch_size=3, global_batch_size=4),
                optim=DistillOptim(warmup_steps=1))
