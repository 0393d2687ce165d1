"""Pretrain the tiny NemotronH teacher on the offline corpus (``nemo-minitron pretrain``).

Pruning a random model shows nothing, so every later stage (importance, pruning, distillation,
the demo) is demonstrated on a small teacher that has really learned English text. It is
trained here on CPU in about ten minutes and cached: a folder holding a complete checkpoint and
its ``train_summary.json`` is reused unless ``force=True``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional

import lightning as L
import torch
from torch import nn

from nemo_minitron.arch import HybridArch, preset
from nemo_minitron.training import TokensPerSecond, cosine_with_warmup, make_adamw, packed_loader, unigram_loss

log = logging.getLogger(__name__)

SUMMARY_FILE = "train_summary.json"
LOGS_SUBDIR = "logs"


class CausalLMModule(L.LightningModule):
    """Next-token cross-entropy training of any HF causal LM.

    HF ``*ForCausalLM`` models shift ``labels`` themselves (``ForCausalLMLoss``: position t
    predicts token t+1; tested in ``tests/test_pretrain.py``), so ``labels=input_ids``.
    """

    def __init__(self, model: nn.Module, lr: float = 2e-3, weight_decay: float = 0.1,
                 warmup_steps: int = 0, total_steps: int = 1, min_lr_ratio: float = 0.1,
                 betas: tuple[float, float] = (0.9, 0.95)) -> None:
        super().__init__()
        self.model = model
        self.lr, self.weight_decay, self.betas = lr, weight_decay, betas
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats) of a batch of token rows."""
        return self.model(input_ids=input_ids, labels=input_ids, use_cache=False).loss

    def training_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self(batch["input_ids"])
        n = batch["input_ids"].shape[0]
        self.log("train_loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=n)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], on_step=True, on_epoch=False,
                 batch_size=n)
        return loss

    def validation_step(self, batch: Dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        # Every packed row has the same number of scored positions, so the batch-size-weighted
        # epoch mean Lightning computes is the exact per-token mean.
        loss = self(batch["input_ids"])
        self.log("val_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True,
                 batch_size=batch["input_ids"].shape[0])
        return loss

    def configure_optimizers(self) -> Dict[str, Any]:
        optimizer = make_adamw(self.model, lr=self.lr, weight_decay=self.weight_decay, betas=self.betas)
        scheduler = cosine_with_warmup(optimizer, self.warmup_steps, self.total_steps, self.min_lr_ratio)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


# --------------------------------------------------------------------------- the stage
def default_teacher_dir() -> Path:
    """Where the built-in tiny teacher lives: ``cache_dir()/tiny-teacher``."""
    from nemo_minitron.data import cache_dir

    return cache_dir() / "tiny-teacher"


def read_summary(output_dir: str | Path) -> Optional[Dict[str, Any]]:
    """The ``train_summary.json`` of a finished teacher, or None when there is none yet."""
    from nemo_minitron.models import is_complete_checkpoint

    folder = Path(output_dir)
    summary = folder / SUMMARY_FILE
    if not (is_complete_checkpoint(folder) and summary.is_file()):
        return None
    try:
        return json.loads(summary.read_text())
    except json.JSONDecodeError:
        return None


def pretrain_teacher(
    output_dir: str,
    arch_name: str = "tiny",
    max_steps: int = 600,
    seq_len: int = 256,
    batch_size: int = 4,
    lr: float = 3e-3,
    warmup_steps: int = 30,
    weight_decay: float = 0.1,
    min_lr_ratio: float = 0.1,
    val_every: int = 100,
    val_batches: int = 4,
    seed: int = 0,
    force: bool = False,
    accelerator: str = "cpu",
    devices: int = 1,
    precision: str = "32-true",
    arch: Optional[HybridArch] = None,
) -> Dict[str, Any]:
    """Train a small NemotronH teacher on the offline corpus and save it as an HF checkpoint.

    Returns the training summary (also saved as ``train_summary.json`` beside the weights).
    When ``output_dir`` already holds a complete checkpoint with a summary and ``force`` is
    False, nothing is trained and the saved summary is returned with ``cached=True``.

    Args:
        output_dir: checkpoint folder (written atomically: it appears complete or not at all).
        arch_name: a preset of ``nemo_minitron.arch.PRESETS`` (default "tiny": 12 layers, 21.7M params).
        max_steps: optimizer steps (one batch each).
        seq_len: tokens per packed training row.
        batch_size: rows per step (per device).
        lr: peak learning rate of the warmup + cosine schedule.
        warmup_steps: linear warmup steps.
        weight_decay: AdamW decay of matrices and embeddings (1-D params are never decayed).
        min_lr_ratio: final LR as a fraction of ``lr``.
        val_every: run a quick validation (``val_batches`` batches) every this many steps; 0: never.
        val_batches: batches in each periodic validation; the final one uses the whole split.
        seed: seeds weights, data order and everything else (``lightning.seed_everything``).
        force: retrain even when ``output_dir`` already holds a finished teacher.
        accelerator: Lightning accelerator ("cpu", "gpu", "auto").
        devices: devices for the Lightning ``Trainer``.
        precision: Lightning precision ("32-true", "bf16-mixed", ...).
        arch: an explicit shape (Python API; overrides ``arch_name``), e.g. for tests.
    """
    config = {k: v for k, v in locals().items() if k not in ("arch", "force")}  # the arguments, first
    from nemo_minitron.data import cached_packed_corpus, load_default_tokenizer
    from nemo_minitron.models import build_model, save_checkpoint

    out = Path(output_dir).expanduser()
    if not force:
        cached = read_summary(out)
        if cached is not None:
            _warn_if_config_differs(cached, config, arch, out)
            print(f"[pretrain] reusing the teacher in {out} (pass force=True to retrain)")
            return {**cached, "cached": True, "output_dir": str(out)}

    t_start = time.perf_counter()
    L.seed_everything(seed, workers=True)
    arch = (arch or preset(arch_name)).validate()
    tokenizer = load_default_tokenizer()
    if arch.vocab_size < len(tokenizer):
        raise ValueError(f"arch vocab_size={arch.vocab_size} is smaller than the tokenizer's {len(tokenizer)}")
    train_rows = cached_packed_corpus("train", seq_len)
    val_rows = cached_packed_corpus("validation", seq_len)
    baseline = unigram_loss(train_rows, val_rows[:, 1:], arch.vocab_size)

    model = build_model(arch, seed=seed)
    module = CausalLMModule(model, lr=lr, weight_decay=weight_decay, warmup_steps=warmup_steps,
                            total_steps=max_steps, min_lr_ratio=min_lr_ratio)
    # Logs live outside the atomically replaced checkpoint folder while training (copied in at the
    # end), in a folder of this run's own: two runs into one output_dir must not share a CSV file.
    log_dir = out.parent / f".{out.name}.logs-{uuid.uuid4().hex[:8]}"
    print(f"[pretrain] training {arch.describe()}; logs in {log_dir} until saved into {out}/{LOGS_SUBDIR}")
    throughput = TokensPerSecond()
    trainer = L.Trainer(
        accelerator=accelerator, devices=devices, precision=precision, max_steps=max_steps,
        logger=_loggers(log_dir), callbacks=[throughput], default_root_dir=str(log_dir),
        enable_checkpointing=False, enable_progress_bar=True, num_sanity_val_steps=0,
        val_check_interval=val_every if val_every > 0 else None, check_val_every_n_epoch=None,
        limit_val_batches=val_batches if val_every > 0 else 0, log_every_n_steps=min(10, max_steps),
        gradient_clip_val=1.0,
    )
    train_loader = packed_loader(train_rows, batch_size, shuffle=True, seed=seed, drop_last=True)
    val_loader = packed_loader(val_rows, batch_size)
    initial_val_loss = _full_validation(trainer, module, val_loader)
    t_fit, cpu_fit = time.perf_counter(), time.process_time()
    trainer.fit(module, train_dataloaders=train_loader, val_dataloaders=val_loader)
    train_seconds = time.perf_counter() - t_fit
    train_cpu_seconds = time.process_time() - cpu_fit  # wall time / threads on an idle machine
    final_train_loss = _final_metric(trainer, "train_loss")  # validate() below resets the metrics
    val_loss = _full_validation(trainer, module, val_loader)
    steps = int(trainer.global_step)
    summary: Dict[str, Any] = {
        "arch": dataclasses.asdict(arch),
        "arch_description": arch.describe(),
        "num_params": arch.num_params(),
        "steps": steps,
        "tokens_seen": steps * batch_size * seq_len * trainer.world_size,
        "train_tokens_available": int(train_rows.numel()),
        "val_tokens": int(val_rows[:, 1:].numel()),
        "final_train_loss": final_train_loss,
        "initial_val_loss": initial_val_loss,
        "val_loss": val_loss,
        "unigram_loss": baseline,
        "val_minus_unigram": val_loss - baseline,
        "train_wall_s": round(train_seconds, 1),
        "train_cpu_s": round(train_cpu_seconds, 1),
        "mean_tokens_per_sec": round(throughput.mean_tokens_per_sec, 1),
        "torch_threads": torch.get_num_threads(),
        "versions": _versions(),
        "config": config,
        "command": _command(config, arch_name, arch),
        "argv": list(sys.argv),
    }
    if trainer.is_global_zero:

        def write_extra(folder: Path) -> None:
            summary["total_wall_s"] = round(time.perf_counter() - t_start, 1)
            (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str) + "\n")
            if log_dir.is_dir():
                shutil.copytree(log_dir, folder / LOGS_SUBDIR)

        save_checkpoint(model, out, tokenizer=tokenizer, extra=write_extra)
        shutil.rmtree(log_dir, ignore_errors=True)
        print(f"[pretrain] {arch.describe()}: val loss {val_loss:.3f} vs unigram {baseline:.3f} after "
              f"{summary['tokens_seen']:,} tokens in {summary['total_wall_s']:.0f} s -> {out}")
    return {**summary, "cached": False, "output_dir": str(out)}


def ensure_tiny_teacher(**overrides: Any) -> Path:
    """The built-in tiny teacher's folder, training it first if it is not there yet.

    Later stages and the demo call this; the first call trains (~10 min on 2 cores), every
    later call returns at once. ``overrides`` go to :func:`pretrain_teacher` (``output_dir``
    defaults to :func:`default_teacher_dir`).
    """
    output_dir = Path(overrides.pop("output_dir", None) or default_teacher_dir())
    pretrain_teacher(output_dir=str(output_dir), **overrides)
    return output_dir


# --------------------------------------------------------------------------- helpers
def _loggers(log_dir: Path) -> List[Any]:
    """CSV always; TensorBoard too when it is installed (it is not a dependency)."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: List[Any] = [CSVLogger(save_dir=str(log_dir), name="csv")]
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        try:
            import tensorboardX  # noqa: F401
        except ImportError:
            return loggers
    loggers.append(TensorBoardLogger(save_dir=str(log_dir), name="tensorboard"))
    return loggers


def _full_validation(trainer: L.Trainer, module: L.LightningModule, loader: Any) -> float:
    """Validation loss over the whole split (periodic checks during fit use ``val_batches``)."""
    limit = trainer.limit_val_batches
    trainer.limit_val_batches = 1.0
    try:
        return float(trainer.validate(module, dataloaders=loader, verbose=False)[0]["val_loss"])
    finally:
        trainer.limit_val_batches = limit


def _final_metric(trainer: L.Trainer, key: str) -> Optional[float]:
    value = trainer.callback_metrics.get(key)
    return None if value is None else float(value)


def _versions() -> Dict[str, str]:
    import transformers

    return {"torch": torch.__version__, "transformers": transformers.__version__, "lightning": L.__version__}


def _command(config: Dict[str, Any], arch_name: str, arch: HybridArch) -> str:
    """The Python call that reproduces this run (explicit arches are spelled out)."""
    from nemo_minitron.arch import PRESETS

    args = ", ".join(f"{k}={v!r}" for k, v in config.items())
    if arch_name not in PRESETS or arch != PRESETS[arch_name]:
        args += f", arch=HybridArch(**{dataclasses.asdict(arch)!r})"
    return f"pretrain_teacher({args})"


def _warn_if_config_differs(cached: Dict[str, Any], config: Dict[str, Any], arch: Optional[HybridArch],
                            out: Path) -> None:
    """A cached teacher trained with other settings is still reused (that is the contract), but
    say so: silently returning a different model than asked for is how experiments go wrong."""
    old = cached.get("config", {})
    ignore = {"output_dir", "accelerator", "devices"}
    diff = {k: (old.get(k), v) for k, v in config.items() if k not in ignore and old.get(k) != v}
    if arch is not None and cached.get("arch") != dataclasses.asdict(arch):
        diff["arch"] = ("saved arch", "requested arch")
    if diff:
        log.warning("reusing %s although it was trained with different settings %s; pass force=True to retrain",
                    out, {k: f"{a!r} -> {b!r}" for k, (a, b) in diff.items()})
