"""What the training stages share: the names that moved into ``train`` / ``optim`` (for
:func:`~nemo_minitron.stages.renames.renamed`), the checks before any model loads, and saving a
finished model (in its source's dtype) with its summary."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Optional

import torch
from torch import nn

from nemo_minitron.data.files import SUPPORTED_EXTENSIONS
from nemo_minitron.models import save_checkpoint
from nemo_minitron.outputs import PathArg
from nemo_minitron.train.config import OptimConfig, TrainConfig

from ._paths import JSONL, check_stage_paths


def moved_to_configs(**stage_specific: str) -> dict[str, str]:
    """``{old flat name: "train.<name>" / "optim.<name>"}`` for every config field, plus the
    stage's own renames (``output_dir="save_path"``)."""
    moved = {f.name: f"train.{f.name}" for f in dataclasses.fields(TrainConfig)}
    moved.update({f.name: f"optim.{f.name}" for f in dataclasses.fields(OptimConfig)})
    moved.update(stage_specific)
    return moved


def check_training_paths(stage: str, save_path: str, summary_file: str, overwrite: bool, train: TrainConfig,
                         checkpoints: Mapping[str, PathArg], data: Optional[Mapping[str, PathArg]] = None,
                         chat_data: bool = False, other_inputs: Optional[Mapping[str, PathArg]] = None) -> None:
    """:func:`~nemo_minitron.stages._paths.check_stage_paths` for a training stage: its finished
    output holds ``summary_file``; ``data`` is text (or, with ``chat_data``, chat / preference JSONL)."""
    check_stage_paths(stage, save_path, (summary_file,), overwrite, checkpoints=checkpoints, data=data,
                      data_extensions=JSONL if chat_data else tuple(SUPPORTED_EXTENSIONS),
                      other_inputs={"train.work_dir": train.work_dir, **(other_inputs or {})})


def save_model(model: nn.Module, tokenizer: Any, save_path: str, summary_file: str, summary: dict[str, Any],
               files: dict[str, str] | None = None, source: str | None = None,
               dtype: torch.dtype | None = None) -> None:
    """The stage's output, atomically: weights (cast to ``dtype``; ``source``'s remote code carried
    along), tokenizer, ``summary_file`` and any small ``files`` (name -> text)."""

    def extra(folder: Any) -> None:
        (folder / summary_file).write_text(json.dumps(summary, indent=1, default=str) + "\n")
        for name, text in (files or {}).items():
            (folder / name).write_text(text)

    model.eval()
    save_checkpoint(model, save_path, tokenizer=tokenizer, extra=extra, source=source, dtype=dtype)


def config_record(train: TrainConfig, optim: OptimConfig, **stage: Any) -> dict[str, Any]:
    """The summary's ``config``: the stage's own settings, then ``train`` and ``optim``."""
    return {**stage, "train": dataclasses.asdict(train), "optim": dataclasses.asdict(optim)}

