"""The settings every training stage shares: :class:`TrainConfig` (data shape, schedule length,
hardware, checkpoints) and :class:`OptimConfig` (AdamW + warmup/cosine schedule).

Stages take them as ``train`` and ``optim`` arguments, so overrides read the same everywhere
(``train.max_steps=20 optim.lr=1e-3``). Each stage keeps its own defaults through a small
subclass that only changes field defaults (``DistillOptim.lr = 1e-3``): NeMo-Run builds a
dotted override from the annotated class, so a subclass default survives ``optim.warmup_steps=3``
where a default *instance* of the base class would not. Both are frozen: a default instance
in a signature is shared by every call. (Field types are real types, not strings, so that the
per-stage classes made by :func:`stage_configs` carry types NeMo-Run can parse.)
"""

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Optional, TypeVar

C = TypeVar("C")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class TrainConfig:
    """How a stage trains: batch shape, length, validation, checkpoints, hardware.

    Attributes:
        seq_length: tokens per training sequence (packed rows; the longest chat sequence).
        micro_batch_size: sequences per device per forward/backward.
        global_batch_size: sequences per optimizer step over all devices; a multiple of
            micro_batch_size x devices (the quotient is the gradient-accumulation count).
        max_steps: optimizer steps; the LR schedule spans them.
        val_check_interval: validate every this many optimizer steps (0: never during training).
        limit_val_batches: batches per periodic validation (0: no validation).
        checkpoint_every: write a resumable Lightning checkpoint every this many steps.
        seed: seeds weights (where built here), data order and everything else.
        accelerator, devices, strategy, precision: the Lightning Trainer's.
        gradient_clip_val: clip the gradient norm to this (None: no clipping).
        work_dir: Lightning checkpoints, logs and stage caches (default ``<save_path>.work``);
            a rerun with the same work_dir resumes from its ``last.ckpt``.
        keep_work: keep work_dir after a finished run (by default it is removed on success:
            optimizer state is tens of GB at 4B parameters).
        stop_after_steps: end this call after that many optimizer steps (counted from step 0)
            with a resumable checkpoint; the schedule still spans max_steps.
        progress: show progress bars.
        ssm_chunk_size: Mamba scan chunk at run time (None: the stage's default; post-training
            and distillation use 32 on CPU, pretraining the checkpoint's own).
    """

    seq_length: int = 256
    micro_batch_size: int = 4
    global_batch_size: int = 8
    max_steps: int = 100
    val_check_interval: int = 50
    limit_val_batches: int = 8
    checkpoint_every: int = 50
    seed: int = 0
    accelerator: str = "cpu"
    devices: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    gradient_clip_val: Optional[float] = None
    work_dir: Optional[str] = None
    keep_work: bool = False
    stop_after_steps: Optional[int] = None
    progress: bool = True
    ssm_chunk_size: Optional[int] = None

    def __post_init__(self) -> None:
        for name in ("seq_length", "micro_batch_size", "global_batch_size", "max_steps", "checkpoint_every",
                     "devices"):
            value = getattr(self, name)
            _check(value >= 1, f"train.{name}={value} must be >= 1")
        for name in ("val_check_interval", "limit_val_batches"):
            value = getattr(self, name)
            _check(value >= 0, f"train.{name}={value} must be >= 0")
        _check(self.stop_after_steps is None or self.stop_after_steps >= 1,
               f"train.stop_after_steps={self.stop_after_steps} must be >= 1 (or None)")
        _check(self.gradient_clip_val is None or self.gradient_clip_val > 0,
               f"train.gradient_clip_val={self.gradient_clip_val} must be > 0 (or None)")
        _check(self.ssm_chunk_size is None or self.ssm_chunk_size >= 1,
               f"train.ssm_chunk_size={self.ssm_chunk_size} must be >= 1 (or None)")
        per_step = self.micro_batch_size * self.devices
        _check(self.global_batch_size % per_step == 0,
               f"train.global_batch_size={self.global_batch_size} must be a multiple of train.micro_batch_size x "
               f"train.devices = {self.micro_batch_size} x {self.devices}")

    @property
    def accumulate(self) -> int:
        """Micro-batches accumulated per optimizer step on each device."""
        return self.global_batch_size // (self.micro_batch_size * self.devices)


#: Learning-rate schedules after the linear warmup (see ``train.optim``).
SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW (no decay on 1-D parameters), linear warmup, then a decay to ``min_lr_ratio x lr``.

    Attributes:
        lr: peak learning rate.
        min_lr_ratio: final LR as a fraction of lr.
        warmup_steps: linear warmup steps (at most train.max_steps).
        weight_decay: AdamW decay of matrices and embeddings.
        beta1, beta2: AdamW betas (beta2 0.95 reacts faster than 0.999 to loss spikes).
        schedule: "cosine" (decay over the whole run) or "wsd" (warmup-stable-decay: constant LR,
            then a linear decay over the last ``decay_steps``; a run can be lengthened by raising
            train.max_steps any time before its decay has begun, and the schedule is the same as if
            the longer run had been planned).
        decay_steps: length of the WSD decay (schedule "wsd" only; at most train.max_steps - warmup_steps).
    """

    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 10
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.95
    schedule: str = "cosine"
    decay_steps: int = 0

    def __post_init__(self) -> None:
        _check(self.lr > 0, f"optim.lr={self.lr} must be > 0")
        _check(0.0 <= self.min_lr_ratio <= 1.0, f"optim.min_lr_ratio={self.min_lr_ratio} must be in [0, 1]")
        _check(self.warmup_steps >= 0, f"optim.warmup_steps={self.warmup_steps} must be >= 0")
        _check(self.weight_decay >= 0, f"optim.weight_decay={self.weight_decay} must be >= 0")
        for name in ("beta1", "beta2"):
            value = getattr(self, name)
            _check(0.0 <= value < 1.0, f"optim.{name}={value} must be in [0, 1)")
        _check(self.schedule in SCHEDULES, f"optim.schedule={self.schedule!r} must be one of {SCHEDULES}")
        _check(self.decay_steps >= 0, f"optim.decay_steps={self.decay_steps} must be >= 0")
        _check(self.schedule == "wsd" or self.decay_steps == 0,
               f"optim.decay_steps={self.decay_steps} is for optim.schedule='wsd' (the cosine decays over the whole run)")

    def check(self, train: TrainConfig) -> None:
        """The checks that need both configs."""
        _check(self.warmup_steps <= train.max_steps,
               f"optim.warmup_steps={self.warmup_steps} must be between 0 and train.max_steps={train.max_steps}")
        _check(self.warmup_steps + self.decay_steps <= train.max_steps,
               f"optim.warmup_steps + optim.decay_steps = {self.warmup_steps + self.decay_steps} must be at most "
               f"train.max_steps={train.max_steps}")


def stage_configs(module: str, prefix: str, train: dict[str, Any], optim: dict[str, Any]) -> tuple[type, type]:
    """A stage's own ``<prefix>Train`` / ``<prefix>Optim``: frozen subclasses of :class:`TrainConfig` /
    :class:`OptimConfig` whose fields default to ``train`` / ``optim``. This is how a stage keeps its
    defaults under NeMo-Run's dotted overrides. Assign them to those names in ``module`` (the stage
    module; YAML names the classes by that path)."""
    return (_with_defaults(TrainConfig, f"{prefix}Train", module, train),
            _with_defaults(OptimConfig, f"{prefix}Optim", module, optim))


def _with_defaults(base: type, name: str, module: str, defaults: dict[str, Any]) -> type:
    types = {f.name: f.type for f in dataclasses.fields(base)}
    unknown = sorted(set(defaults) - set(types))
    if unknown:
        raise TypeError(f"{base.__name__} has no field {unknown}")
    fields = [(k, types[k], dataclasses.field(default=v)) for k, v in defaults.items()]
    cls = dataclasses.make_dataclass(name, fields, bases=(base,), frozen=True)
    stage = module.rpartition(".")[2]
    cls.__module__, cls.__qualname__ = module, name
    cls.__doc__ = f"{base.__name__} with the {stage} stage's defaults: {defaults or 'those of ' + base.__name__}."
    return cls


def with_overrides(config: C, overrides: dict[str, Any]) -> tuple[C, dict[str, Any]]:
    """``config`` with the overrides that name its fields replaced, and the overrides left over.

    For Python callers that hold flat settings (``{"max_steps": 20, "lr": 1e-3, ...}``): split
    them between a stage's ``train`` and ``optim`` in two calls.
    """
    names = {f.name for f in dataclasses.fields(config)}  # type: ignore[arg-type]
    mine = {k: v for k, v in overrides.items() if k in names}
    rest = {k: v for k, v in overrides.items() if k not in names}
    return dataclasses.replace(config, **mine), rest  # type: ignore[type-var]


def settings_kwargs(stage: Callable[..., Any], **settings: Any) -> dict[str, Any]:
    """A training stage's keyword arguments for flat settings (``max_steps=20, lr=1e-3, topk=16``):
    the names of ``train`` / ``optim`` fields go into copies of the stage's own defaults, the rest
    are passed as they are. For scripts and searches that keep per-run settings in one flat dict."""
    params = inspect.signature(stage).parameters
    train, rest = with_overrides(params["train"].default, settings)
    optim, rest = with_overrides(params["optim"].default, rest)
    return {"train": train, "optim": optim, **rest}


def call_with_settings(stage: Callable[..., Any], *args: Any, **settings: Any) -> Any:
    """Call a training stage with flat settings (see :func:`settings_kwargs`)."""
    return stage(*args, **settings_kwargs(stage, **settings))
