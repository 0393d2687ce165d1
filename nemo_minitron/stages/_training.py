"""What the training stages share: the names that moved into ``train`` / ``optim`` (for
:func:`~nemo_minitron.stages.renames.renamed`), and saving a finished model with its summary."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from torch import nn

from nemo_minitron.models import save_checkpoint
from nemo_minitron.train.config import OptimConfig, TrainConfig


def moved_to_configs(**stage_specific: str) -> dict[str, str]:
    """``{old flat name: "train.<name>" / "optim.<name>"}`` for every config field, plus the
    stage's own renames (``output_dir="save_path"``)."""
    moved = {f.name: f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    moved.update({f.name: f"optim.{f.name}" for f in dataclasses.fields(OptimConfig)})
    moved.update(stage_specific)
    return moved


def save_model(model: nn.Module, tokenizer: Any, save_path: str, summary_file: str, summary: dict[str, Any],
               files: dict[str, str] | None = None) -> None:
    """The stage's output, atomically: weights, tokenizer, ``summary_file`` and any small ``files``
    (name -> text)."""

    def extra(folder: Any) -> None:
        (folder / summary_file).write_text(json.dumps(summary, indent=1, default=str) + "\n")
        for name, text in (files or {}).items():
            (folder / name).write_text(text)

    model.eval()
    save_checkpoint(model, save_path, tokenizer=tokenizer, extra=extra)


def config_record(train: TrainConfig, optim: OptimConfig, **stage: Any) -> dict[str, Any]:
    """The summary's ``config``: the stage's own settings, then ``train`` and ``optim``."""
    return {**stage, "train": dataclasses.asdict(train), "optim": dataclasses.asdict(optim)}

