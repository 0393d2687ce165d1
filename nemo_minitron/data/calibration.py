"""Calibration token batches for importance estimation: the user's files or the offline corpus."""

from __future__ import annotations

from typing import Any, Optional

import torch

from nemo_minitron.data.corpus import load_default_corpus
from nemo_minitron.data.files import load_text_files
from nemo_minitron.data.packing import tokenize_and_pack


def calibration_tokens(tokenizer: Any, num_samples: int, seq_len: int, data_path: Optional[str] = None,
                       text_field: str = "text", seed: int = 0, split: str = "train") -> torch.LongTensor:
    """``num_samples`` packed rows of ``seq_len`` tokens, drawn at random (seeded) from the data.

    With no ``data_path`` the offline default corpus is used, tokenized with the model's own
    tokenizer (a real checkpoint's vocabulary differs from the built-in default's).
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples={num_samples} must be positive")
    if data_path:
        texts = load_text_files([p.strip() for p in str(data_path).split(",")], text_field=text_field)
    else:
        corpus = load_default_corpus()
        texts = corpus.train if split == "train" else corpus.validation
    rows = tokenize_and_pack(texts, tokenizer, seq_len)
    if rows.shape[0] < num_samples:
        raise ValueError(
            f"calibration data has only {rows.shape[0]} sequences of {seq_len} tokens but num_samples={num_samples}; "
            "lower num_samples or seq_length, or pass more data")
    pick = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
    return rows[pick.sort().values]
