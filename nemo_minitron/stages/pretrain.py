"""``nemo-minitron pretrain``: train the tiny NemotronH teacher on the offline corpus (cached).

Pruning a random model shows nothing, so every later stage (importance, pruning, distillation,
the demo) is demonstrated on a small teacher that has really learned English text. It is
trained here on CPU in about ten minutes and cached: a folder holding a complete checkpoint and
its ``train_summary.json`` is reused unless ``force=True``. Training is resumable like every
stage's: a rerun continues from ``<save_path>.work/checkpoints/last.ckpt``.
"""

import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Optional

import torch

from nemo_minitron.arch import HybridArch, preset
from nemo_minitron.train import (CausalLMModule, OptimConfig, PackedRows, StepData, TrainConfig, fit, packed_loader,
                                 unigram_loss, validation_loss)
from nemo_minitron.train.longrun import CURVE_FILE, HeldOut, HFSnapshot, TrainingCurve
from nemo_minitron.train.trainer import LOGS_SUBDIR, work_dir_of

from ._training import check_training_paths, moved_to_configs
from .renames import renamed
from .settings import PretrainTrain, PretrainOptim

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"



def default_teacher_dir() -> Path:
    """Where the built-in tiny teacher lives: ``cache_dir()/tiny-teacher``."""
    from nemo_minitron.data import cache_dir

    return cache_dir() / "tiny-teacher"


def read_summary(save_path: str | Path) -> Optional[Dict[str, Any]]:
    """The ``train_summary.json`` of a finished teacher, or None when there is none yet."""
    from nemo_minitron.models import is_complete_checkpoint

    folder = Path(save_path)
    summary = folder / SUMMARY_FILE
    if not (is_complete_checkpoint(folder) and summary.is_file()):
        return None
    try:
        return json.loads(summary.read_text())
    except json.JSONDecodeError:
        return None


@renamed(**moved_to_configs(output_dir="save_path", seq_len="train.seq_length", batch_size="train.micro_batch_size",
                            val_every="train.val_check_interval", val_batches="train.limit_val_batches"))
def pretrain(save_path: str, arch_name: str = "tiny", force: bool = False, train: PretrainTrain = PretrainTrain(),
             optim: PretrainOptim = PretrainOptim(), arch: Optional[HybridArch] = None,
             overwrite: bool = False, corpus: str = "default", snapshot_path: Optional[str] = None,
             snapshot_every: int = 0, init_from: Optional[str] = None, first_step: int = 0) -> Dict[str, Any]:
    """Train a small NemotronH teacher on the offline corpus and save it as an HF checkpoint.

    Returns the training summary (also saved as ``train_summary.json`` beside the weights).
    When ``save_path`` already holds a complete checkpoint with a summary and ``force`` is
    False, nothing is trained and the saved summary is returned with ``cached=True``.

    Args:
        save_path: checkpoint folder (written atomically: it appears complete or not at all).
        arch_name: a preset of ``nemo_minitron.arch.PRESETS`` (default "tiny": 12 layers, 21.7M params).
        force: retrain even when ``save_path`` already holds a finished teacher.
        train: batch shape, steps, validation (``val_check_interval`` steps, ``limit_val_batches``
            batches; the final validation uses the whole split), hardware; ``seed`` seeds weights
            and data order.
        optim: AdamW + warmup/cosine schedule.
        arch: an explicit shape (Python API; overrides ``arch_name``), e.g. for tests.
        overwrite: allow a non-empty ``save_path`` that is not a pretrain output (its contents are
            replaced); an earlier pretrain output is always reused (or replaced with ``force``).
        corpus: "default" (gensim's text, the 32000-token SentencePiece) or "teacher" (the teacher
            corpus of ``data.teacher_corpus`` with its 8192-token BPE; its periodic validations also
            measure the default corpus's held-out documents, ``old_split``).
        snapshot_path: a folder for a bf16 HF snapshot every ``snapshot_every`` steps and at the end
            (a long run's progress that outlives the work folder; see ``train.longrun``).
        init_from, first_step: continue another run (a warm start): start from the weights of the HF
            checkpoint ``init_from`` (of this arch, or of this arch with narrower MLPs, which are widened)
            instead of a random init, and train on the data from that run's step ``first_step`` on;
            logs and snapshots count steps from that run's start.
            ``train`` and ``optim`` describe this run (its own steps, warmup and decay).
    """
    import lightning as L

    if first_step < 0 or (first_step and not init_from):
        raise ValueError(f"first_step={first_step} needs init_from (the weights of the run it continues)")
    check_training_paths("pretrain", save_path, SUMMARY_FILE, overwrite, train, checkpoints={"init_from": init_from})

    config = {"arch_name": arch_name, "corpus": corpus, "train": dataclasses.asdict(train),
              "optim": dataclasses.asdict(optim)}
    config = json.loads(json.dumps(config))
    from nemo_minitron.data import cached_packed_corpus
    from nemo_minitron.data.packing import corpus_tokenizer
    from nemo_minitron.models import build_model, save_checkpoint
    from nemo_minitron.models.runtime import set_ssm_chunk_size

    out = Path(save_path).expanduser()
    if not force:
        cached = read_summary(out)
        if cached is not None:
            _warn_if_config_differs(cached, config, arch, out)
            print(f"[pretrain] reusing the teacher in {out} (pass force=True to retrain)")
            return {**cached, "cached": True, "save_path": str(out)}

    t_start = time.perf_counter()
    optim.check(train)
    L.seed_everything(train.seed, workers=True)
    arch = (arch or preset(arch_name)).validate()
    tokenizer = corpus_tokenizer(corpus)
    if arch.vocab_size < len(tokenizer):
        raise ValueError(f"arch vocab_size={arch.vocab_size} is smaller than the tokenizer's {len(tokenizer)}")
    train_rows = cached_packed_corpus("train", train.seq_length, corpus=corpus)
    val_rows = cached_packed_corpus("validation", train.seq_length, corpus=corpus)
    baseline = unigram_loss(train_rows, val_rows[:, 1:], arch.vocab_size)

    model = build_model(arch, seed=train.seed) if init_from is None else _warm_start(init_from, arch, train.seed)
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):  # generate() stops at the tokenizer's EOS
        setattr(model.config, name, getattr(tokenizer, name))
        setattr(model.generation_config, name, getattr(tokenizer, name))
    set_ssm_chunk_size(model, train.ssm_chunk_size)
    module = CausalLMModule(model, optim=optim, total_steps=train.max_steps)
    print(f"[pretrain] training {arch.describe()} on the {corpus} corpus")
    initial_val_loss = validation_loss(model, val_rows[:64], train.micro_batch_size)
    val = held_out(corpus, "validation", val_rows, tokenizer, train.seq_length)
    # Periodic validations read the first train.limit_val_batches batches: a seeded sample of the split
    # for the teacher corpus (its documents are in source order); the default corpus keeps its order.
    periodic = val_rows if corpus == "default" else val_rows[torch.randperm(
        len(val_rows), generator=torch.Generator().manual_seed(train.seed))]
    data = StepData(PackedRows(train_rows), train.micro_batch_size, train.max_steps, seed=train.seed,
                    val=PackedRows(periodic), first_step=first_step)
    work = work_dir_of(train, str(out))
    tokens_per_step = train.global_batch_size * train.seq_length
    curve = TrainingCurve(work / CURVE_FILE, every=max(1, min(10, train.max_steps // 10)),
                          tokens_per_step=tokens_per_step, max_steps=train.max_steps, val=val,
                          held_out={"old_split": held_out("default", "validation", None, tokenizer, train.seq_length)}
                          if corpus != "default" else None, batch_size=train.micro_batch_size, first_step=first_step)
    callbacks: list[Any] = [curve]
    if snapshot_path and snapshot_every > 0:
        state = {"arch": arch.to_dict(), "corpus": corpus, "config": config, "tokens_per_step": tokens_per_step,
                 "first_step": first_step, "init_from": init_from,
                 "command": _command(out, arch_name, arch, train, optim, corpus)}
        callbacks.append(HFSnapshot(Path(snapshot_path), snapshot_every, tokenizer,
                                    lambda: {**state, "versions": _versions()}, curve=work / CURVE_FILE,
                                    first_step=first_step, history=Path(init_from) / CURVE_FILE if init_from else None))
    cpu_fit = time.process_time()
    result = fit(module, data, train, optim, str(out), tokens_per_row=train.seq_length, callbacks=callbacks)
    train_cpu_seconds = time.process_time() - cpu_fit  # wall time / threads on an idle machine
    trainer, steps = result.trainer, result.summary["steps"]
    summary: Dict[str, Any] = {
        "arch": arch.to_dict(),
        "arch_description": arch.describe(),
        "num_params": arch.num_params(),
        "dtype": "float32",
        "init_from": init_from,
        "first_step": first_step,
        "steps": steps,
        "finished": result.finished,
        "resumed_from": result.summary["resumed_from"],
        "resumed_from_step": result.summary["resumed_from_step"],
        "tokens_seen": result.summary["tokens"],
        "train_tokens_available": int(train_rows.numel()),
        "val_tokens": int(val_rows[:, 1:].numel()),
        "final_train_loss": result.summary["metrics"].get("train_loss"),
        "initial_val_loss": initial_val_loss,
    }
    if not result.finished:
        return {**summary, "cached": False, "save_path": str(out)}
    val_loss = _full_validation(trainer, module, packed_loader(val_rows, train.micro_batch_size))
    summary.update({
        "corpus": corpus,
        "val_loss": val_loss,
        "val_bpb_estimate": val.bits_per_byte(val_loss),
        "unigram_loss": baseline,
        "val_minus_unigram": val_loss - baseline,
        "train_wall_s": result.summary["seconds"],
        "train_cpu_s": round(train_cpu_seconds, 1),
        "mean_tokens_per_sec": result.summary["tokens_per_sec"],
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
        "config": config,
        "command": _command(out, arch_name, arch, train, optim, corpus),
        "argv": list(sys.argv),
    })

    def save() -> None:
        def write_extra(folder: Path) -> None:
            summary["total_wall_s"] = round(time.perf_counter() - t_start, 1)
            (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
            if (result.work / LOGS_SUBDIR).is_dir():
                shutil.copytree(result.work / LOGS_SUBDIR, folder / LOGS_SUBDIR)

        save_checkpoint(model, out, tokenizer=tokenizer, extra=write_extra)
        print(f"[pretrain] {arch.describe()}: val loss {val_loss:.3f} vs unigram {baseline:.3f} after "
              f"{summary['tokens_seen']:,} tokens in {summary['total_wall_s']:.0f} s -> {out}")

    result.finish(save)
    return {**json.loads(json.dumps(summary, default=str)), "cached": False, "save_path": str(out)}


def ensure_tiny_teacher(save_path: Optional[str] = None, **kwargs: Any) -> Path:
    """The built-in tiny teacher's folder, training it first if it is not there yet.

    Later stages and the demo call this; the first call trains (~10 min on 2 cores), every
    later call returns at once. ``kwargs`` go to :func:`pretrain` (``save_path`` defaults to
    :func:`default_teacher_dir`).
    """
    folder = Path(save_path or default_teacher_dir())
    pretrain(save_path=str(folder), **kwargs)
    return folder


def _full_validation(trainer: Any, module: Any, loader: Any) -> float:
    """Validation loss over the whole split (periodic checks during fit use ``limit_val_batches``)."""
    limit = trainer.limit_val_batches
    trainer.limit_val_batches = 1.0
    try:
        return float(trainer.validate(module, dataloaders=loader, verbose=False)[0]["val_loss"])
    finally:
        trainer.limit_val_batches = limit


def _versions() -> Dict[str, str]:
    import lightning as L
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "lightning": L.__version__}


def _warm_start(path: str, arch: HybridArch, seed: int) -> torch.nn.Module:
    """The model of checkpoint ``path`` in float32, refused unless it has the shape being trained or that
    shape with narrower MLPs, which are widened without changing its logits (``models.widen``)."""
    from nemo_minitron.models import load_model
    from nemo_minitron.models.widen import widen_ffn

    model = load_model(path, dtype=torch.float32)
    found = HybridArch.from_hf_config(model.config)
    narrower = found.ffn_hidden_size and found.ffn_hidden_size < (arch.ffn_hidden_size or 0)
    if narrower and found.replace(ffn_hidden_size=arch.ffn_hidden_size) == arch:
        print(f"[pretrain] widening the MLPs of {path}: {found.ffn_hidden_size} -> {arch.ffn_hidden_size} neurons "
              "(new output columns zero: the same logits)")
        return widen_ffn(model, arch.ffn_hidden_size, seed=seed)
    if found != arch:
        raise ValueError(f"init_from={path} is {found.describe()}, not the arch being trained ({arch.describe()})")
    return model


def held_out(corpus: str, split: str, rows: Optional[torch.Tensor], tokenizer: Any, seq_len: int) -> HeldOut:
    """A corpus split as a :class:`HeldOut`: its packed ``rows`` (None: packed here with ``tokenizer``,
    ``<s>`` before each document, as the teacher corpus is), and its UTF-8 bytes per token, counting
    every token of the split with the ``<s>`` / ``</s>`` around each document."""
    from nemo_minitron.data.packing import cached_packed, corpus_documents

    docs = corpus_documents(corpus, split)
    if rows is None:
        rows = cached_packed(docs, tokenizer, seq_len, f"{corpus}-{split}-vocab{len(tokenizer)}", add_bos=True)
    ids = tokenizer(docs, add_special_tokens=False, return_attention_mask=False)["input_ids"]
    n_tokens = sum(len(x) + 2 for x in ids)
    n_bytes = sum(len(doc.encode("utf-8")) for doc in docs)
    return HeldOut(rows=rows, bytes_per_token=n_bytes / max(1, n_tokens))


def _command(out: Path, arch_name: str, arch: HybridArch, train: TrainConfig, optim: OptimConfig,
             corpus: str = "default") -> str:
    """The Python call that reproduces this run (explicit arches are spelled out)."""
    from nemo_minitron.arch import PRESETS

    args = f"save_path={str(out)!r}, arch_name={arch_name!r}, train={train!r}, optim={optim!r}"
    if corpus != "default":
        args += f", corpus={corpus!r}"
    if arch_name not in PRESETS or arch != PRESETS[arch_name]:
        args += f", arch=HybridArch(**{arch.to_dict()!r})"
    return f"pretrain({args})"


def _flat(config: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def _warn_if_config_differs(cached: Dict[str, Any], config: Dict[str, Any], arch: Optional[HybridArch],
                            out: Path) -> None:
    """A cached teacher trained with other settings is still reused (that is the contract), but
    say so: silently returning a different model than asked for is how experiments go wrong."""
    old, new = _flat(cached.get("config", {})), _flat(config)
    ignore = {f"train.{k}" for k in ("accelerator", "devices", "strategy", "work_dir", "keep_work", "progress",
                                     "stop_after_steps")}
    diff = {k: (old.get(k), v) for k, v in new.items() if k not in ignore and old.get(k) != v}
    if arch is not None and cached.get("arch") != arch.to_dict():
        diff["arch"] = ("saved arch", "requested arch")
    if diff:
        log.warning("reusing %s although it was trained with different settings %s; pass force=True to retrain",
                    out, {k: f"{a!r} -> {b!r}" for k, (a, b) in diff.items()})
