"""Post-training stages (paper 4.3): SFT-KD x2 -> RPO x2 -> long-context SFT, on HF checkpoints.

Every stage reads an HF checkpoint folder and writes one to ``save_path`` (weights, the
tokenizer with the chat template, and ``<stage>_summary.json``), atomically. Lightning
checkpoints, logs, the top-k cache and sampled preference pairs go to ``work_dir`` (default
``<save_path>.work``); rerunning a stage with the same ``work_dir`` resumes it (finished
cache shards are skipped, sampled pairs are reused, training resumes from ``last.ckpt``).

The built-in default data are the checkable instruction tasks of
:mod:`nemo_minitron.data.instruct_tasks`. The paper distills from an *instruct* teacher; the
built-in tiny teacher is a base LM, so :func:`make_instruct_teacher` first fine-tunes it on the
round-1 + round-2 tasks (plain SFT on assistant tokens) and SFT-KD then distills the pruned
student from that instruct teacher.

Signatures use ``Optional[...]`` and plain types so they work as NeMo-Run CLI entrypoints.
``ssm_chunk_size`` (every stage) is the Mamba scan chunk used at run time; by default 32 on CPU
(about 2x faster there with the reference kernels, same result) and the checkpoint's own on GPU.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Optional

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, Dataset

from nemo_minitron.data.chat import (ChatDataset, PreferencePair, chat_collate, load_chat_jsonl, load_preference_jsonl,
                                     pad_id_of, tokenize_prompt_response, with_chat_template, write_jsonl)
from nemo_minitron.data.instruct_tasks import ROUND_TASKS, TASKS, generate_tasks, is_correct, round_records
from nemo_minitron.distill.data import StepBatchSampler
from nemo_minitron.distill.preference import PREFERENCE_LOSSES
from nemo_minitron.models import load_model, load_tokenizer, save_checkpoint
from nemo_minitron.training import TokensPerSecond

from .modules import RPOModule, SFTKDModule, preference_collate, resolve_chunk_size, set_ssm_chunk_size
from .topk_cache import TopKDataset, build_topk_cache, checkpoint_fingerprint, topk_collate

SFT_SUMMARY = "sft_summary.json"
SFT_KD_SUMMARY = "sft_kd_summary.json"
RPO_SUMMARY = "rpo_summary.json"
LONG_CONTEXT_SUMMARY = "long_context_summary.json"


# --------------------------------------------------------------------------- training plumbing
class _StepData(L.LightningDataModule):
    """A map-style dataset in a resumable, rank-sliced order (see ``distill.data.StepBatchSampler``)."""

    def __init__(self, dataset: Dataset, collate: Callable, micro_batch: int, max_steps: int, seed: int):
        super().__init__()
        self.dataset, self.collate = dataset, collate
        self.micro_batch, self.max_steps, self.seed = micro_batch, max_steps, seed

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        accumulate = trainer.accumulate_grad_batches if trainer else 1
        sampler = StepBatchSampler(
            len(self.dataset), self.micro_batch, self.max_steps * accumulate, seed=self.seed,
            start=trainer.global_step * accumulate if trainer else 0,
            rank=trainer.global_rank if trainer else 0, world_size=trainer.world_size if trainer else 1)
        return DataLoader(self.dataset, batch_sampler=sampler, collate_fn=self.collate)


class _LossHistory(L.Callback):
    """Keeps each micro-batch's training loss (for the summary's first/last loss)."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if torch.is_tensor(loss):
            self.losses.append(float(loss.detach()))


def _accumulation(global_batch: int, micro_batch: int, world: int) -> int:
    if micro_batch < 1 or global_batch % (micro_batch * world):
        raise ValueError(f"global_batch_size={global_batch} must be a multiple of micro_batch_size x devices "
                         f"= {micro_batch} x {world}")
    return global_batch // (micro_batch * world)


def _fit(module: L.LightningModule, dataset: Dataset, collate: Callable, *, micro_batch_size: int,
         global_batch_size: int, max_steps: int, seed: int, work: Path, accelerator: str, devices: int,
         strategy: str, precision: str, progress: bool, checkpoint_every: int,
         tokens_key: str = "input_ids") -> dict[str, Any]:
    if max_steps < 1:
        raise ValueError(f"max_steps={max_steps} must be >= 1")
    accumulate = _accumulation(global_batch_size, micro_batch_size, devices)
    if len(dataset) < micro_batch_size * devices:
        raise ValueError(f"only {len(dataset)} training examples for micro_batch_size={micro_batch_size} x "
                         f"devices={devices}; generate more data or lower the batch size")
    history, speed = _LossHistory(), TokensPerSecond(key=tokens_key)
    ckpt = ModelCheckpoint(dirpath=work / "checkpoints", save_last=True, every_n_train_steps=checkpoint_every,
                           save_top_k=0)
    trainer = L.Trainer(
        max_steps=max_steps, accelerator=accelerator, devices=devices, strategy=strategy, precision=precision,
        accumulate_grad_batches=accumulate, use_distributed_sampler=False, logger=CSVLogger(work, name="logs"),
        callbacks=[ckpt, history, speed], limit_val_batches=0, num_sanity_val_steps=0,
        enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=max(1, min(10, max_steps // 10)),
        gradient_clip_val=1.0, deterministic=False,
    )
    last = work / "checkpoints" / "last.ckpt"
    module.train()  # HF from_pretrained returns eval-mode models; frozen teachers/references are not children
    resume_from = str(last) if last.is_file() else None
    start = time.perf_counter()
    data = _StepData(dataset, collate, micro_batch_size, max_steps, seed)
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    window = max(1, min(5 * accumulate, len(history.losses) // 2))
    first = history.losses[:window]
    final = history.losses[-window:]
    return {
        "trainer": trainer, "steps": trainer.global_step, "finished": trainer.global_step >= max_steps,
        "seconds": round(time.perf_counter() - start, 1), "resumed_from": resume_from,
        "loss_first": sum(first) / len(first) if first else math.nan,
        "loss_last": sum(final) / len(final) if final else math.nan,
        "tokens_per_sec": round(speed.mean_tokens_per_sec, 1),
        "metrics": {k: float(v) for k, v in trainer.callback_metrics.items() if torch.is_tensor(v) and v.numel() == 1},
    }


def _save(model: torch.nn.Module, tokenizer: Any, save_path: str, summary_file: str, summary: dict[str, Any],
          trainer: L.Trainer) -> None:
    if trainer.is_global_zero and summary.get("finished", True):
        model.eval()
        save_checkpoint(model, save_path, tokenizer=with_chat_template(tokenizer),
                        extra=lambda d: (d / summary_file).write_text(json.dumps(summary, indent=1, default=str)))


def _public(fit: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fit.items() if k != "trainer"}


def _conversations(data_path: Optional[str], default: Callable[[], list[dict[str, Any]]]) -> list[list[dict[str, str]]]:
    if data_path:
        records: list[dict[str, Any]] = []
        for path in [p.strip() for p in str(data_path).split(",") if p.strip()]:
            records += load_chat_jsonl(path)
    else:
        records = default()
    return [r["messages"] for r in records]


# --------------------------------------------------------------------------- stages
def _plain_sft(model_path: str, dataset: Any, tokenizer: Any, save_path: str, *, lr: float, min_lr_ratio: float,
               warmup_steps: int, max_steps: int, weight_decay: float, micro_batch_size: int, global_batch_size: int,
               seed: int, work_dir: Optional[str], accelerator: str, devices: int, strategy: str, precision: str,
               progress: bool, checkpoint_every: int, ssm_chunk_size: Optional[int]) -> tuple[Any, dict[str, Any]]:
    """Cross-entropy on assistant tokens only (no teacher): the instruct-teacher and long-context stages."""
    model = load_model(model_path)
    set_ssm_chunk_size(model, resolve_chunk_size(ssm_chunk_size, accelerator))
    module = SFTKDModule(model, lr=lr, min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps, total_steps=max_steps,
                         weight_decay=weight_decay, kd_weight=0.0, sft_weight=1.0)
    fit = _fit(module, dataset, partial(chat_collate, pad_id=pad_id_of(tokenizer)), micro_batch_size=micro_batch_size,
               global_batch_size=global_batch_size, max_steps=max_steps, seed=seed,
               work=Path(work_dir or f"{save_path}.work"), accelerator=accelerator, devices=devices,
               strategy=strategy, precision=precision, progress=progress, checkpoint_every=checkpoint_every)
    return module, fit


def make_instruct_teacher(base_teacher_path: str, save_path: str, data_path: Optional[str] = None,
                          num_train: int = 4000, seq_length: int = 256, max_steps: int = 300,
                          micro_batch_size: int = 16, global_batch_size: int = 16, lr: float = 1e-3,
                          min_lr_ratio: float = 0.1, warmup_steps: int = 20, weight_decay: float = 0.01,
                          accelerator: str = "cpu", devices: int = 1, strategy: str = "auto",
                          precision: str = "32-true", seed: int = 0, ssm_chunk_size: Optional[int] = None,
                          work_dir: Optional[str] = None, checkpoint_every: int = 100,
                          progress: bool = True) -> dict[str, Any]:
    """Plain SFT (cross-entropy on assistant tokens) of a base teacher into an instruct teacher.

    The paper's SFT-KD teacher is an aligned model; the built-in tiny teacher is a base LM that
    does not know the tasks, so this makes an instruct teacher from it on the round-1 + round-2
    checkable tasks (``num_train`` conversations, half per round) or on ``data_path`` (chat JSONL,
    comma-separated files).
    """
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(base_teacher_path)
    convs = _conversations(data_path, lambda: round_records(1, num_train // 2, seed) +
                           round_records(2, num_train - num_train // 2, seed))
    dataset = ChatDataset(convs, tokenizer, seq_length)
    module, fit = _plain_sft(base_teacher_path, dataset, tokenizer, save_path, lr=lr, min_lr_ratio=min_lr_ratio,
                             warmup_steps=warmup_steps, max_steps=max_steps, weight_decay=weight_decay,
                             micro_batch_size=micro_batch_size, global_batch_size=global_batch_size, seed=seed,
                             work_dir=work_dir, accelerator=accelerator, devices=devices, strategy=strategy,
                             precision=precision, progress=progress, checkpoint_every=checkpoint_every,
                             ssm_chunk_size=ssm_chunk_size)
    summary = {"stage": "instruct_sft", "base_teacher_path": str(base_teacher_path), **_public(fit),
               "data": data_path or "built-in tasks, rounds 1+2", "conversations": len(dataset),
               "dropped_too_long": dataset.num_dropped,
               "config": {"lr": lr, "max_steps": max_steps, "global_batch_size": global_batch_size,
                          "seq_length": seq_length, "warmup_steps": warmup_steps, "seed": seed}}
    _save(module.student, tokenizer, save_path, SFT_SUMMARY, summary, fit["trainer"])
    return summary


def sft_kd(teacher_path: str, student_path: str, save_path: str, data_path: Optional[str] = None, round: int = 1,
           topk: int = 100, renormalize: bool = True, kd_weight: float = 1.0, sft_weight: float = 0.0,
           num_train: int = 2000, seq_length: int = 256, max_steps: int = 100, micro_batch_size: int = 8,
           global_batch_size: int = 8, lr: float = 5e-4, min_lr_ratio: float = 0.1, warmup_steps: int = 10,
           weight_decay: float = 0.01, logits_dtype: str = "float16", cache_dir: Optional[str] = None,
           teacher_batch_size: int = 8, shard_size: int = 256, accelerator: str = "cpu", devices: int = 1,
           strategy: str = "auto", precision: str = "32-true", seed: int = 0,
           ssm_chunk_size: Optional[int] = None, work_dir: Optional[str] = None, checkpoint_every: int = 50,
           progress: bool = True) -> dict[str, Any]:
    """SFT with knowledge distillation from the teacher's cached top-k logits (one round).

    Loss on assistant tokens only: ``kd_weight`` x forward KL(teacher || student) restricted to
    the teacher's ``topk`` ids (renormalised over them unless ``renormalize=False``) +
    ``sft_weight`` x cross-entropy. Data: ``data_path`` (chat JSONL, comma-separated files) or
    ``num_train`` built-in conversations of round ``round`` (1: arithmetic/reverse/copy,
    2: kv_recall/fact/copy). The teacher pass is cached in ``cache_dir`` (default
    ``<work_dir>/topk_cache``) and resumable.
    """
    from nemo_minitron.distill.run import check_same_tokenizer

    teacher_tok, tokenizer = load_tokenizer(teacher_path), load_tokenizer(student_path)
    check_same_tokenizer(teacher_tok, tokenizer, teacher_path, student_path)
    L.seed_everything(seed, workers=True, verbose=False)
    convs = _conversations(data_path, lambda: round_records(round, num_train, seed))
    chats = ChatDataset(convs, tokenizer, seq_length)
    work = Path(work_dir or f"{save_path}.work")
    cache = Path(cache_dir or work / "topk_cache")
    teacher = load_model(teacher_path)
    chunk = resolve_chunk_size(ssm_chunk_size, accelerator)
    set_ssm_chunk_size(teacher, chunk)
    device = "cuda" if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available() else "cpu"
    cache_info = build_topk_cache(teacher.to(device), chats.items, cache, k=topk, shard_size=shard_size,
                                  batch_size=teacher_batch_size, logits_dtype=logits_dtype,
                                  teacher_fingerprint=checkpoint_fingerprint(teacher_path),
                                  pad_id=pad_id_of(tokenizer), progress=progress)
    del teacher
    dataset = TopKDataset(cache, chats.items)
    student = load_model(student_path)
    set_ssm_chunk_size(student, chunk)
    module = SFTKDModule(student, lr=lr, min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps, total_steps=max_steps,
                         weight_decay=weight_decay, kd_weight=kd_weight, sft_weight=sft_weight, renormalize=renormalize)
    fit = _fit(module, dataset, partial(topk_collate, pad_id=pad_id_of(tokenizer)), micro_batch_size=micro_batch_size,
               global_batch_size=global_batch_size, max_steps=max_steps, seed=seed, work=work,
               accelerator=accelerator, devices=devices, strategy=strategy, precision=precision, progress=progress,
               checkpoint_every=checkpoint_every)
    summary = {"stage": f"sft_kd_round{round}", "teacher_path": str(teacher_path), "student_path": str(student_path),
               **_public(fit), "data": data_path or f"built-in tasks, round {round}: {', '.join(ROUND_TASKS[round])}",
               "conversations": len(chats), "dropped_too_long": chats.num_dropped,
               "topk_cache": {k: cache_info[k] for k in ("k", "logits_dtype", "positions", "bytes", "num_shards",
                                                         "built_shards", "skipped_shards", "seconds")}
               | {"dir": str(cache)},
               "config": {"topk": topk, "renormalize": renormalize, "kd_weight": kd_weight, "sft_weight": sft_weight,
                          "lr": lr, "max_steps": max_steps, "global_batch_size": global_batch_size,
                          "seq_length": seq_length, "warmup_steps": warmup_steps, "seed": seed}}
    _save(module.student, tokenizer, save_path, SFT_KD_SUMMARY, summary, fit["trainer"])
    return summary


# --------------------------------------------------------------------------- RPO
def make_preference_pairs(records: Sequence[dict[str, Any]], samples: Sequence[Sequence[str]], seed: int = 0,
                          gold_chosen: bool = False) -> tuple[list[PreferencePair], dict[str, Any]]:
    """One pair per prompt from sampled answers scored by ``is_correct`` (reward 1 / 0):
    chosen = a correct sample, rejected = an incorrect one; prompts where all samples are
    correct give no contrast and are skipped. Prompts where all samples are wrong are skipped
    too, unless ``gold_chosen``: then the checker's reference answer is the chosen one, so a
    model that is still weak (early in a run, or a test-sized run) gets a contrast as well."""
    rng = random.Random(seed)
    pairs, n_correct, n_total, all_right, all_wrong = [], 0, 0, 0, 0
    for record, answers in zip(records, samples):
        flags = [is_correct(record["task"], a, record["answer"]) for a in answers]
        n_correct += sum(flags)
        n_total += len(flags)
        good = sorted({a for a, ok in zip(answers, flags) if ok})
        bad = sorted({a for a, ok in zip(answers, flags) if not ok})
        if not good:
            all_wrong += 1
            if not gold_chosen:
                continue
            good = [record["answer"]]
        if not bad:
            all_right += 1
            continue
        msgs = record["messages"]
        prompt = msgs[:-1] if msgs[-1]["role"] == "assistant" else msgs
        pairs.append(PreferencePair([dict(m) for m in prompt], rng.choice(good), rng.choice(bad), 1.0, 0.0))
    stats = {"prompts": len(records), "samples": n_total, "sample_accuracy": n_correct / max(1, n_total),
             "pairs": len(pairs), "prompts_all_correct": all_right, "prompts_all_wrong": all_wrong}
    return pairs, stats


def sample_preference_pairs(model: torch.nn.Module, tokenizer: Any, records: Sequence[dict[str, Any]],
                            num_samples: int = 4, temperature: float = 1.0, max_new_tokens: int = 16,
                            batch_size: int = 32, seed: int = 0, progress: bool = True,
                            gold_chosen: bool = False) -> tuple[list[PreferencePair], dict[str, Any]]:
    """Sample ``num_samples`` answers per prompt from ``model`` and pair them by correctness."""
    from .generate import generate_answers

    samples = generate_answers(model, tokenizer, [r["messages"] for r in records], max_new_tokens=max_new_tokens,
                               temperature=temperature, batch_size=batch_size, seed=seed, num_samples=num_samples,
                               progress=progress)
    return make_preference_pairs(records, samples, seed=seed, gold_chosen=gold_chosen)


class _PairDataset(Dataset):
    def __init__(self, pairs: Sequence[PreferencePair], tokenizer: Any, max_len: int):
        self.items = []
        for p in pairs:
            cid, cmask = tokenize_prompt_response(tokenizer, p.prompt, p.chosen, max_len)
            rid, rmask = tokenize_prompt_response(tokenizer, p.prompt, p.rejected, max_len)
            if sum(cmask) == 0 or sum(rmask) == 0:
                continue  # response cut off by max_len
            self.items.append({"chosen_ids": cid, "chosen_mask": cmask, "rejected_ids": rid, "rejected_mask": rmask,
                               "reward_chosen": p.reward_chosen, "reward_rejected": p.reward_rejected})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def rpo(model_path: str, save_path: str, data_path: Optional[str] = None, round: int = 1,
        loss_type: str = "rpo_bwd_kl", beta: float = 0.1, eta: float = 1.0, sft_weight: float = 0.0,
        num_prompts: int = 256, num_samples: int = 4, temperature: float = 1.0, max_new_tokens: int = 16,
        tasks: Optional[str] = None, gold_chosen: bool = False, seq_length: int = 256, max_steps: int = 50,
        micro_batch_size: int = 8, global_batch_size: int = 8, lr: float = 1e-5, min_lr_ratio: float = 0.1,
        warmup_steps: int = 5,
        weight_decay: float = 0.0, accelerator: str = "cpu", devices: int = 1, strategy: str = "auto",
        precision: str = "32-true", seed: int = 0, ssm_chunk_size: Optional[int] = None,
        work_dir: Optional[str] = None, checkpoint_every: int = 50, progress: bool = True) -> dict[str, Any]:
    """One round of preference alignment (RPO or DPO) against a frozen copy of ``model_path``.

    Pairs: ``data_path`` (preference JSONL: prompt, chosen, rejected, optional rewards) or, by
    default, sampled from the model itself: ``num_samples`` answers at ``temperature`` for each
    of ``num_prompts`` built-in task prompts (``tasks``: comma-separated, default all five),
    rewarded 1/0 by the task checker; chosen = a correct sample, rejected = an incorrect one
    (with ``gold_chosen`` the checker's reference answer is chosen where every sample is wrong).
    Loss: ``loss_type`` in rpo_bwd_kl | rpo_fwd_kl | rpo_sq | dpo with a = beta x (policy-vs-
    reference log-ratio gap) and b = eta x (reward gap), + ``sft_weight`` x NLL of chosen.
    Sampled pairs are saved to ``<work_dir>/pairs.jsonl`` and reused when the stage resumes.
    """
    if loss_type not in PREFERENCE_LOSSES:
        raise ValueError(f"loss_type={loss_type!r} must be one of {PREFERENCE_LOSSES}")
    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(model_path)
    policy = load_model(model_path)
    chunk = resolve_chunk_size(ssm_chunk_size, accelerator)
    set_ssm_chunk_size(policy, chunk)
    work = Path(work_dir or f"{save_path}.work")
    pairs_file, meta_file = work / "pairs.jsonl", work / "pairs_meta.json"
    task_list = tuple(t.strip() for t in tasks.split(",")) if tasks else TASKS
    meta = {"model": checkpoint_fingerprint(model_path), "data_path": data_path, "round": round,
            "num_prompts": num_prompts, "num_samples": num_samples, "temperature": temperature,
            "max_new_tokens": max_new_tokens, "tasks": list(task_list), "seed": seed, "gold_chosen": gold_chosen}
    stats: dict[str, Any]
    if data_path:
        pairs = [p for path in str(data_path).split(",") if path.strip() for p in load_preference_jsonl(path.strip())]
        stats = {"pairs": len(pairs), "source": data_path}
    elif pairs_file.is_file() and meta_file.is_file() and json.loads(meta_file.read_text()).get("meta") == meta:
        pairs = load_preference_jsonl(pairs_file)
        stats = {**json.loads(meta_file.read_text())["stats"], "reused": str(pairs_file)}
    else:
        unknown = [t for t in task_list if t not in TASKS]
        if unknown:
            raise ValueError(f"tasks={tasks!r}: unknown {unknown}; choose from {TASKS}")
        records = generate_tasks(task_list, num_prompts, seed=seed + 104723 * round, split="train")
        pairs, stats = sample_preference_pairs(policy, tokenizer, records, num_samples, temperature, max_new_tokens,
                                               seed=seed + round, progress=progress, gold_chosen=gold_chosen)
        if pairs:
            write_jsonl((p.to_record() for p in pairs), pairs_file)
            meta_file.write_text(json.dumps({"meta": meta, "stats": stats}, indent=1))
    if loss_type != "dpo" and any(p.reward_chosen is None for p in pairs):
        raise ValueError(f"loss_type={loss_type!r} needs reward_chosen/reward_rejected in every pair; "
                         "add them to the data or use loss_type='dpo'")
    dataset = _PairDataset(pairs, tokenizer, seq_length)
    if len(dataset) < micro_batch_size:
        raise ValueError(f"only {len(dataset)} preference pairs ({stats}); need at least micro_batch_size="
                         f"{micro_batch_size}. With sampled pairs: more num_prompts/num_samples, or a temperature "
                         "that gives both correct and wrong answers")
    reference = load_model(model_path)
    set_ssm_chunk_size(reference, chunk)
    pad = pad_id_of(tokenizer)
    module = RPOModule(policy, reference, loss_type=loss_type, beta=beta, eta=eta, sft_weight=sft_weight, lr=lr,
                       min_lr_ratio=min_lr_ratio, warmup_steps=warmup_steps, total_steps=max_steps,
                       weight_decay=weight_decay, pad_id=pad)
    fit = _fit(module, dataset, partial(preference_collate, pad_id=pad), micro_batch_size=micro_batch_size,
               global_batch_size=global_batch_size, max_steps=max_steps, seed=seed, work=work,
               accelerator=accelerator, devices=devices, strategy=strategy, precision=precision, progress=progress,
               checkpoint_every=checkpoint_every, tokens_key="chosen_ids")
    summary = {"stage": f"rpo_round{round}", "model_path": str(model_path), **_public(fit), "pairs": stats,
               "pairs_file": str(pairs_file) if not data_path else data_path,
               "config": {"loss_type": loss_type, "beta": beta, "eta": eta, "sft_weight": sft_weight, "lr": lr,
                          "max_steps": max_steps, "global_batch_size": global_batch_size, "seq_length": seq_length,
                          "num_prompts": num_prompts, "num_samples": num_samples, "temperature": temperature,
                          "gold_chosen": gold_chosen, "seed": seed}}
    _save(module.policy, tokenizer, save_path, RPO_SUMMARY, summary, fit["trainer"])
    return summary


# --------------------------------------------------------------------------- long context
def long_context(model_path: str, save_path: str, min_len: int, max_len: int, data_path: Optional[str] = None,
                 num_train: int = 64, num_pairs: int = 3, max_steps: int = 20, micro_batch_size: int = 1,
                 global_batch_size: int = 2, lr: float = 1e-4, min_lr_ratio: float = 0.1, warmup_steps: int = 2,
                 weight_decay: float = 0.01, accelerator: str = "cpu", devices: int = 1, strategy: str = "auto",
                 precision: str = "32-true", seed: int = 0, ssm_chunk_size: Optional[int] = None,
                 work_dir: Optional[str] = None, checkpoint_every: int = 20,
                 progress: bool = True) -> dict[str, Any]:
    """Long-context SFT (cross-entropy on assistant tokens) on sequences of ``min_len``..``max_len`` tokens.

    Built-in data (:mod:`nemo_minitron.data.long_context`): ``num_train`` conversations made of
    round-2 chat turns, with key-value facts stated in the first turn and asked about in the
    last, the total length drawn uniformly in [min_len, max_len]. ``data_path``: chat JSONL of
    ready long conversations instead (truncated at ``max_len``).
    """
    from nemo_minitron.data.long_context import build_long_dataset

    L.seed_everything(seed, workers=True, verbose=False)
    tokenizer = load_tokenizer(model_path)
    if data_path:
        dataset = ChatDataset(_conversations(data_path, list), tokenizer, max_len)
        lengths = [len(it["input_ids"]) for it in dataset.items]
        distances: list[int] = []
    else:
        samples = build_long_dataset(tokenizer, num_train, min_len, max_len, seed=seed, num_pairs=num_pairs)
        dataset = ChatDataset([s.messages for s in samples], tokenizer, max_len)
        lengths = [len(s.input_ids) for s in samples]
        distances = [s.distance for s in samples]
    module, fit = _plain_sft(model_path, dataset, tokenizer, save_path, lr=lr, min_lr_ratio=min_lr_ratio,
                             warmup_steps=warmup_steps, max_steps=max_steps, weight_decay=weight_decay,
                             micro_batch_size=micro_batch_size, global_batch_size=global_batch_size, seed=seed,
                             work_dir=work_dir, accelerator=accelerator, devices=devices, strategy=strategy,
                             precision=precision, progress=progress, checkpoint_every=checkpoint_every,
                             ssm_chunk_size=ssm_chunk_size)
    summary = {"stage": "long_context", "model_path": str(model_path), **_public(fit),
               "data": data_path or "built-in long kv-recall conversations (round-2 chat filler)",
               "sequences": len(dataset), "min_len": min_len, "max_len": max_len,
               "length_range": [min(lengths), max(lengths)] if lengths else None,
               "mean_evidence_distance": sum(distances) / len(distances) if distances else None,
               "config": {"lr": lr, "max_steps": max_steps, "global_batch_size": global_batch_size,
                          "num_train": num_train, "num_pairs": num_pairs, "seed": seed}}
    _save(module.student, tokenizer, save_path, LONG_CONTEXT_SUMMARY, summary, fit["trainer"])
    return summary
