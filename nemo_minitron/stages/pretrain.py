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
from nemo_minitron.train.trainer import LOGS_SUBDIR

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
             overwrite: bool = False) -> Dict[str, Any]:
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
    """
    import lightning as L

    check_training_paths("pretrain", save_path, SUMMARY_FILE, overwrite, train, checkpoints={})

    config = {"arch_name": arch_name, "train": dataclasses.asdict(train), "optim": dataclasses.asdict(optim)}
    config = json.loads(json.dumps(config))
    from nemo_minitron.data import cached_packed_corpus, load_default_tokenizer
    from nemo_minitron.models import build_model, save_checkpoint

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
    tokenizer = load_default_tokenizer()
    if arch.vocab_size < len(tokenizer):
        raise ValueError(f"arch vocab_size={arch.vocab_size} is smaller than the tokenizer's {len(tokenizer)}")
    train_rows = cached_packed_corpus("train", train.seq_length)
    val_rows = cached_packed_corpus("validation", train.seq_length)
    baseline = unigram_loss(train_rows, val_rows[:, 1:], arch.vocab_size)

    model = build_model(arch, seed=train.seed)
    module = CausalLMModule(model, optim=optim, total_steps=train.max_steps)
    print(f"[pretrain] training {arch.describe()}")
    initial_val_loss = validation_loss(model, val_rows, train.micro_batch_size)
    data = StepData(PackedRows(train_rows), train.micro_batch_size, train.max_steps, seed=train.seed,
                    val=PackedRows(val_rows))
    cpu_fit = time.process_time()
    result = fit(module, data, train, optim, str(out), tokens_per_row=train.seq_length)
    train_cpu_seconds = time.process_time() - cpu_fit  # wall time / threads on an idle machine
    trainer, steps = result.trainer, result.summary["steps"]
    summary: Dict[str, Any] = {
        "arch": arch.to_dict(),
        "arch_description": arch.describe(),
        "num_params": arch.num_params(),
        "dtype": "float32",
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
        "val_loss": val_loss,
        "unigram_loss": baseline,
        "val_minus_unigram": val_loss - baseline,
        "train_wall_s": result.summary["seconds"],
        "train_cpu_s": round(train_cpu_seconds, 1),
        "mean_tokens_per_sec": result.summary["tokens_per_sec"],
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
        "config": config,
        "command": _command(out, arch_name, arch, train, optim),
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


def _command(out: Path, arch_name: str, arch: HybridArch, train: TrainConfig, optim: OptimConfig) -> str:
    """The Python call that reproduces this run (explicit arches are spelled out)."""
    from nemo_minitron.arch import PRESETS

    args = f"save_path={str(out)!r}, arch_name={arch_name!r}, train={train!r}, optim={optim!r}"
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
