"""Wiring the post-training stages share: plain SFT of a checkpoint, and saving a chat model."""

from __future__ import annotations

from functools import partial
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import Dataset

from nemo_minitron.data.chat import chat_collate, pad_id_of, with_chat_template
from nemo_minitron.models import load_model
from nemo_minitron.models.runtime import resolve_chunk_size, set_ssm_chunk_size
from nemo_minitron.train import FitResult, OptimConfig, SFTKDModule, StepData, TrainConfig, fit

from ._training import save_model


def load_for_training(path: str, train: TrainConfig) -> nn.Module:
    """A checkpoint with post-training's run-time scan chunk (32 on CPU unless set)."""
    model = load_model(path)
    set_ssm_chunk_size(model, resolve_chunk_size(train.ssm_chunk_size, train.accelerator))
    return model


def plain_sft(model_path: str, dataset: Dataset, tokenizer: Any, save_path: str, train: TrainConfig,
              optim: OptimConfig) -> tuple[SFTKDModule, FitResult]:
    """Cross-entropy on assistant tokens only (no teacher): the instruct-teacher and long-context stages."""
    module = SFTKDModule(load_for_training(model_path, train), optim=optim, total_steps=train.max_steps,
                         kd_weight=0.0, sft_weight=1.0)
    data = StepData(dataset, train.micro_batch_size, train.max_steps, seed=train.seed,
                    collate=partial(chat_collate, pad_id=pad_id_of(tokenizer)))
    return module, fit(module, data, train, optim, save_path)


def finish_chat_model(result: FitResult, model: nn.Module, tokenizer: Any, save_path: str, summary_file: str,
                      summary: dict[str, Any], files: Optional[dict[str, str]] = None, source: Optional[str] = None,
                      dtype: Optional[torch.dtype] = None) -> None:
    """Save a finished stage's model with the chat template (then drop the work folder)."""
    result.finish(lambda: save_model(model, with_chat_template(tokenizer), save_path, summary_file, summary, files,
                                     source=source, dtype=dtype))
