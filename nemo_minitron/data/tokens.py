"""Token rows for calibration, distillation and evaluation: the user's files or the offline corpus.

Every stage tokenizes with the *model's* tokenizer: a real checkpoint's vocabulary differs from
the built-in default's. With the default tokenizer and corpus the packed result is cached.
"""

from __future__ import annotations

import hashlib
from typing import Any, Optional

import torch

from nemo_minitron.data.corpus import load_default_corpus
from nemo_minitron.data.files import load_text_files
from nemo_minitron.data.packing import cached_packed_corpus, tokenize_and_pack
from nemo_minitron.data.tokenizer import load_default_tokenizer

SPLITS = ("train", "validation")


def _is_default_tokenizer(tokenizer: Any) -> bool:
    default = load_default_tokenizer()
    return tokenizer is default or (len(tokenizer) == len(default) and tokenizer.get_vocab() == default.get_vocab())


def corpus_tokens(tokenizer: Any, seq_len: int, data_path: Optional[str] = None, split: str = "train",
                  text_field: str = "text") -> torch.LongTensor:
    """Packed [rows, seq_len] token ids of ``data_path`` (comma-separated files) or of the default
    corpus ``split``."""
    if data_path:
        paths = [p.strip() for p in str(data_path).split(",") if p.strip()]
        return tokenize_and_pack(load_text_files(paths, text_field=text_field), tokenizer, seq_len)
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    if _is_default_tokenizer(tokenizer):
        return cached_packed_corpus(split, seq_len)
    key = (_vocab_digest(tokenizer), split, seq_len)
    if key not in _PACKED:  # a process distilling several students re-reads the same rows
        _PACKED[key] = tokenize_and_pack(getattr(load_default_corpus(), split), tokenizer, seq_len)
    return _PACKED[key].clone()


#: Packed default-corpus rows per (tokenizer vocabulary, split, seq_len), for this process.
_PACKED: dict[tuple[str, str, int], torch.Tensor] = {}


def _vocab_digest(tokenizer: Any) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha1(repr((type(tokenizer).__name__, vocab)).encode()).hexdigest()


def sample_rows(rows: torch.Tensor, num_samples: int, seed: int = 0, what: str = "calibration") -> torch.Tensor:
    """``num_samples`` rows drawn at random (seeded), in their original order."""
    if num_samples <= 0:
        raise ValueError(f"num_samples={num_samples} must be positive")
    if rows.shape[0] < num_samples:
        raise ValueError(
            f"{what} data has only {rows.shape[0]} sequences of {rows.shape[1]} tokens but num_samples={num_samples}; "
            "lower num_samples or the sequence length, or pass more data")
    pick = torch.randperm(rows.shape[0], generator=torch.Generator().manual_seed(seed))[:num_samples]
    return rows[pick.sort().values]


def calibration_tokens(tokenizer: Any, num_samples: int, seq_len: int, data_path: Optional[str] = None,
                       text_field: str = "text", seed: int = 0) -> torch.LongTensor:
    """Calibration batches for importance estimation (training split or the user's files)."""
    return sample_rows(corpus_tokens(tokenizer, seq_len, data_path, "train", text_field), num_samples, seed)
