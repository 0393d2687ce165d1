"""Teacher pretraining: schedule, optimizer groups, unigram baseline, and a ~10-step real run.

The end-to-end run trains a 4M-parameter NemotronH (hidden 64, "M-*-", the real 32000-token
tokenizer) on the real packed corpus at seq_len 64, once per module; the corpus cache lives in
the default cache folder (tokenizing it again per test would cost more than the training).
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import shutil
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from torch import nn

from conftest import lr_trace
from nemo_minitron.arch import HybridArch
from nemo_minitron.models import load_model, load_tokenizer
from nemo_minitron.stages.pretrain import (SUMMARY_FILE, PretrainOptim, PretrainTrain, default_teacher_dir,
                                           ensure_tiny_teacher, pretrain)
from nemo_minitron.stages.renames import RenamedArgumentError
from nemo_minitron.train import CausalLMModule, cosine_with_warmup, make_adamw, packed_loader, unigram_loss

SMALL_ARCH = HybridArch(
    family="nemotron_h", pattern="M-*-", hidden_size=64, vocab_size=32000, ffn_hidden_size=128,
    num_attention_heads=4, num_query_groups=2, attention_head_dim=16, mamba_num_heads=4, mamba_head_dim=16,
    mamba_num_groups=2, mamba_state_dim=16,
).validate()
RUN = dict(arch=SMALL_ARCH, train=PretrainTrain(max_steps=10, seq_length=64, micro_batch_size=8, global_batch_size=8,
                                                val_check_interval=5, limit_val_batches=2, seed=0),
           optim=PretrainOptim(lr=1e-2, warmup_steps=2))


# ----------------------------------------------------------------------------- train/
def _lrs(warmup: int, total: int, min_ratio: float, steps: int) -> list[float]:
    return lr_trace(lambda opt: cosine_with_warmup(opt, warmup, total, min_ratio), steps)


def test_schedule_warms_up_linearly_then_decays_to_min_ratio():
    lrs = _lrs(warmup=10, total=100, min_ratio=0.1, steps=130)
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])  # linear, first step not 0
    assert lrs[10] == pytest.approx(1.0)  # peak right after warmup
    decay = lrs[10:101]
    assert all(a > b for a, b in zip(decay, decay[1:]))  # strictly decreasing
    assert lrs[55] == pytest.approx(0.55)  # cosine midpoint: halfway between peak and floor
    assert lrs[100] == pytest.approx(0.1) and lrs[129] == pytest.approx(0.1)  # floor, then flat


def test_schedule_without_warmup_and_bad_arguments():
    assert _lrs(0, 10, 0.0, 11)[0] == pytest.approx(1.0)
    assert _lrs(0, 10, 0.0, 11)[10] == pytest.approx(0.0)
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        cosine_with_warmup(opt, 20, 10)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        cosine_with_warmup(opt, 0, 10, min_lr_ratio=2.0)


def test_adamw_does_not_decay_norms_biases_or_1d_params():
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 10, bias=False))
    model[3].weight = model[0].weight  # tied: must appear once
    opt = make_adamw(model, lr=1e-3, weight_decay=0.1)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and plain["weight_decay"] == 0.0
    assert {id(p) for p in decayed["params"]} == {id(model[0].weight), id(model[1].weight)}
    assert {id(p) for p in plain["params"]} == {id(model[1].bias), id(model[2].weight), id(model[2].bias)}
    assert opt.defaults["betas"] == (0.9, 0.95)


def test_unigram_loss_by_hand():
    # counts of [0, 0, 1] plus one each over vocab 3: [3, 2, 1] / 6
    loss = unigram_loss(torch.tensor([[0, 0, 1]]), torch.tensor([0, 2]), vocab_size=3)
    assert loss == pytest.approx(-(math.log(3 / 6) + math.log(1 / 6)) / 2)
    with pytest.raises(ValueError, match="vocab_size"):
        unigram_loss(torch.tensor([5]), torch.tensor([0]), vocab_size=3)


def test_packed_loader_yields_rows_as_dicts_reproducibly():
    rows = torch.arange(40).view(10, 4)
    batches = list(packed_loader(rows, batch_size=3, shuffle=False))
    assert [b["input_ids"].shape[0] for b in batches] == [3, 3, 3, 1]
    assert torch.equal(torch.cat([b["input_ids"] for b in batches]), rows)
    order = lambda seed: torch.cat([b["input_ids"] for b in packed_loader(rows, 3, True, seed, drop_last=True)])
    assert torch.equal(order(1), order(1)) and not torch.equal(order(1), order(2))
    assert order(1).shape == (9, 4)
    with pytest.raises(ValueError, match="no rows"):
        packed_loader(rows[:0], batch_size=2, shuffle=False)


def test_hf_causal_lm_shifts_labels_itself(tiny_model, input_ids):
    """Why CausalLMModule passes labels=input_ids: the HF loss predicts token t+1 from position t."""
    module = CausalLMModule(tiny_model)
    logits = tiny_model(input_ids=input_ids, use_cache=False).logits
    manual = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), input_ids[:, 1:].reshape(-1))
    assert module(input_ids).item() == pytest.approx(manual.item(), rel=1e-5)


def test_entrypoint_signature_has_no_pep604_unions():
    """NeMo-Run's CLI parser rejects ``X | None``; the stage must use ``Optional[X]``."""
    for name, param in inspect.signature(pretrain).parameters.items():
        assert "|" not in str(param.annotation), name


def test_old_argument_names_are_refused_with_the_new_name(tmp_path):
    for old, new in [("output_dir", "save_path"), ("seq_len", "train.seq_length"),
                     ("batch_size", "train.micro_batch_size"), ("val_every", "train.val_check_interval"),
                     ("val_batches", "train.limit_val_batches"), ("max_steps", "train.max_steps"), ("lr", "optim.lr")]:
        with pytest.raises(RenamedArgumentError, match=f"'{old}' was renamed to '{new}'"):
            pretrain(**{"save_path": str(tmp_path / "t"), old: 1} if old != "output_dir" else {old: str(tmp_path)})
    assert not (tmp_path / "t").exists()


# ----------------------------------------------------------------------------- a real short run
@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("pretrain") / "teacher"
    return out, pretrain(str(out), **RUN)


def _val_loss(model: nn.Module, rows: torch.Tensor) -> float:
    with torch.no_grad():
        losses = [model(input_ids=b["input_ids"], labels=b["input_ids"], use_cache=False).loss
                  for b in packed_loader(rows, 8)]
    weights = [len(b["input_ids"]) for b in packed_loader(rows, 8)]
    return float(sum(l * w for l, w in zip(losses, weights)) / sum(weights))


def test_short_run_learns_and_reports(trained):
    out, summary = trained
    assert summary["cached"] is False and summary["steps"] == RUN["train"].max_steps
    assert summary["tokens_seen"] == 10 * 8 * 64
    assert summary["num_params"] == SMALL_ARCH.num_params()
    # From the uniform-ish random init (~ln 32000) down, and the training curve too.
    assert summary["initial_val_loss"] == pytest.approx(math.log(32000), abs=0.3)
    assert summary["val_loss"] < summary["initial_val_loss"] - 1.0
    assert 6.0 < summary["unigram_loss"] < 9.0
    assert summary["val_minus_unigram"] == pytest.approx(summary["val_loss"] - summary["unigram_loss"])
    assert summary["mean_tokens_per_sec"] > 0 and summary["train_wall_s"] > 0
    assert "pretrain(" in summary["command"] and "arch=HybridArch(" in summary["command"]
    # The summary, config, tokenizer and logs were saved inside the same atomic checkpoint.
    assert json.loads((out / SUMMARY_FILE).read_text())["val_loss"] == summary["val_loss"]
    metrics = (out / "logs" / "version_0" / "metrics.csv").read_text()
    assert "train_loss" in metrics and "tokens_per_sec" in metrics and "val_loss" in metrics
    assert not Path(f"{out}.work").exists()  # the run's work folder (checkpoints, logs) is gone
    assert len(load_tokenizer(out)) == 32000


def test_checkpoint_reloads_to_the_trained_weights(trained):
    from nemo_minitron.data import cached_packed_corpus

    out, summary = trained
    model = load_model(out).eval()
    assert sum(p.numel() for p in model.parameters()) == SMALL_ARCH.num_params()
    again = load_model(out).eval()
    ids = cached_packed_corpus("validation", 64)[:2]
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, again(input_ids=ids).logits)
    # Same validation loss as measured inside training: the saved weights are the trained ones.
    assert _val_loss(model, cached_packed_corpus("validation", 64)) == pytest.approx(summary["val_loss"], abs=1e-4)


def test_second_call_reuses_the_checkpoint_without_training(trained, monkeypatch):
    out, summary = trained
    stamp = (out / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("a cached teacher must not be retrained")

    monkeypatch.setattr(L, "Trainer", no_training)
    start = time.perf_counter()
    again = pretrain(str(out), **RUN)
    assert time.perf_counter() - start < 2.0
    assert again["cached"] is True
    assert {k: again[k] for k in summary if k != "cached"} == {k: summary[k] for k in summary if k != "cached"}
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp


def test_force_retrains_reproducibly(trained, tmp_path):
    out, summary = trained
    copy = tmp_path / "teacher"
    shutil.copytree(out, copy)
    again = pretrain(str(copy), force=True, **RUN)
    assert again["cached"] is False
    assert again["val_loss"] == pytest.approx(summary["val_loss"], abs=1e-4)  # seeded: same run


def test_default_teacher_dir_and_ensure_reuse(trained, tmp_path, monkeypatch):
    monkeypatch.setenv("NEMO_MINITRON_CACHE", str(tmp_path / "cache"))
    assert default_teacher_dir() == tmp_path / "cache" / "tiny-teacher"
    shutil.copytree(trained[0], default_teacher_dir())
    monkeypatch.setattr(L, "Trainer", lambda *a, **k: pytest.fail("ensure_tiny_teacher retrained"))
    assert ensure_tiny_teacher() == default_teacher_dir()


def test_pretraining_is_resumable(trained, tmp_path):
    """Stopped after 3 of 10 steps and rerun: the same teacher as the uninterrupted run."""
    out, summary = trained
    first = pretrain(str(tmp_path / "t"), **{**RUN, "train": dataclasses.replace(RUN["train"], stop_after_steps=3)})
    assert first["steps"] == 3 and not first["finished"] and not (tmp_path / "t").exists()
    second = pretrain(str(tmp_path / "t"), **RUN)
    assert second["finished"] and second["resumed_from_step"] == 3 and second["steps"] == 10
    assert second["val_loss"] == pytest.approx(summary["val_loss"], abs=1e-5)
    assert not (tmp_path / "t.work").exists()
