"""Pack tokenized documents into fixed-length rows for pretraining-style LM batches.

Calibration and distillation consume ``[n, seq_len]`` blocks of real text with no padding
waste. Documents are concatenated with an EOS after each one (so the model sees where a
document ends) and the stream is cut into rows; a document may span two rows.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from nemo_minitron.atomic import atomic_file
from nemo_minitron.data.cache import cache_dir

# Bump when packing or cleaning changes output for the same inputs (invalidates caches).
_PACKING_FORMAT_VERSION = 1
# Below this many texts a progress bar is noise.
_PROGRESS_MIN_TEXTS = 256
SPLITS = ("train", "validation")


def _check_seq_len(seq_len: int) -> None:
    # A row needs at least one input and one next-token target.
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 2:
        raise ValueError(f"seq_len must be an integer >= 2, got {seq_len!r}")


def pack_token_ids(
    docs: Iterable[Sequence[int]],
    seq_len: int,
    eos_id: int,
    drop_last: bool = True,
    pad_id: int | None = None,
) -> torch.LongTensor:
    """Concatenate ``doc + [eos_id]`` for every non-empty doc and cut into ``[n, seq_len]``.

    ``drop_last=True`` drops the trailing partial row (every token is real text, the usual
    choice for training). ``drop_last=False`` keeps it, right-padded with ``pad_id``
    (default ``eos_id``; pass the tokenizer's pad id if labels must mask the padding).
    Empty documents are skipped: they would only add a stray EOS.
    """
    _check_seq_len(seq_len)
    stream = array("q")  # 8 bytes/token instead of ~36 for a list of Python ints
    for doc in docs:
        if len(doc) == 0:
            continue
        stream.extend(doc.tolist() if hasattr(doc, "tolist") else doc)  # tensors, ndarrays
        stream.append(eos_id)
    n_full, remainder = divmod(len(stream), seq_len)
    if remainder and not drop_last:
        stream.extend([eos_id if pad_id is None else pad_id] * (seq_len - remainder))
        n_full += 1
    if n_full == 0:
        return torch.empty((0, seq_len), dtype=torch.long)
    flat = torch.frombuffer(stream, dtype=torch.long, count=n_full * seq_len).clone()
    return flat.view(n_full, seq_len)


def tokenize_and_pack(
    texts: Sequence[str] | Iterable[str],
    tokenizer: transformers.PreTrainedTokenizerBase,
    seq_len: int,
    drop_last: bool = True,
    add_bos: bool = False,
    batch_size: int = 512,
    show_progress: bool | None = None,
) -> torch.LongTensor:
    """Tokenize ``texts`` in batches (fast tokenizers parallelize a batch) and pack them.

    Special tokens are not added per text; the packer inserts EOS between documents and
    ``add_bos=True`` prepends BOS to each document. With ``drop_last=False`` the last row is
    padded with the tokenizer's pad id (EOS if it has none). The progress bar shows by
    default for >= 256 texts.
    """
    _check_seq_len(seq_len)
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("tokenizer has no eos_token_id; packing needs a document separator")
    bos_id = tokenizer.bos_token_id
    if add_bos and bos_id is None:
        raise ValueError("add_bos=True but the tokenizer has no bos_token_id")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")

    texts = list(texts)
    if show_progress is None:
        show_progress = len(texts) >= _PROGRESS_MIN_TEXTS

    def token_docs() -> Iterable[list[int]]:
        with tqdm(total=len(texts), desc="tokenizing", unit="doc", disable=not show_progress) as bar:
            for start in range(0, len(texts), batch_size):
                batch = texts[start : start + batch_size]
                encoded = tokenizer(
                    batch, add_special_tokens=False, return_attention_mask=False, verbose=False
                )["input_ids"]
                for ids in encoded:
                    yield ([bos_id] + ids) if (add_bos and ids) else ids
                bar.update(len(batch))

    return pack_token_ids(token_docs(), seq_len, eos_id, drop_last=drop_last,
                          pad_id=tokenizer.pad_token_id)


def _fingerprint(docs: Sequence[str], tokenizer: transformers.PreTrainedTokenizerBase,
                 seq_len: int, add_bos: bool = False) -> str:
    """Hash everything the packed tensor depends on: texts, tokenizer, library, format."""
    h = hashlib.sha256()
    h.update(f"v{_PACKING_FORMAT_VERSION}|{seq_len}|{transformers.__version__}|".encode())
    h.update(f"{Path(str(tokenizer.name_or_path)).name}|{len(tokenizer)}|".encode())
    h.update(f"{tokenizer.eos_token_id}|{tokenizer.pad_token_id}|".encode())
    if add_bos:  # (absent for add_bos=False, so caches of the default corpus keep their names)
        h.update(f"bos{tokenizer.bos_token_id}|".encode())
    for doc in docs:
        data = doc.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:16]


def _atomic_save(tensor: torch.Tensor, path: Path, metadata: dict[str, str]) -> None:
    """Write atomically: readers never see a half-written file, and concurrent writers just
    race to an identical result."""
    with atomic_file(path) as tmp:
        save_file({"input_ids": tensor.contiguous()}, str(tmp), metadata=metadata)


def cached_packed(docs: Sequence[str], tokenizer: transformers.PreTrainedTokenizerBase, seq_len: int, name: str,
                  add_bos: bool = False) -> torch.LongTensor:
    """``tokenize_and_pack(docs, ...)`` (trailing partial row dropped), cached under
    ``cache_dir()/packed/`` as safetensors keyed by ``name``, seq_len and a content fingerprint, so
    repeated runs (tests, demo, recipes) skip tokenization; any change of texts, tokenizer or
    transformers version yields a new file."""
    _check_seq_len(seq_len)
    fingerprint = _fingerprint(docs, tokenizer, seq_len, add_bos)
    folder = cache_dir() / "packed"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-L{seq_len}-{fingerprint}.safetensors"
    if path.is_file():
        try:
            return load_file(path)["input_ids"]
        except Exception:  # truncated/corrupt file from an old crash: rebuild below
            pass
    packed = tokenize_and_pack(docs, tokenizer, seq_len, drop_last=True, add_bos=add_bos)
    _atomic_save(packed, path, {"name": name, "seq_len": str(seq_len), "fingerprint": fingerprint,
                                "n_docs": str(len(docs))})
    return packed


#: The corpora :func:`cached_packed_corpus` packs, by name.
CORPORA = ("default", "teacher")


def corpus_documents(corpus: str, split: str, validation_fraction: float = 0.05) -> list[str]:
    """The documents of one split of a named corpus: "default" (gensim's Wikipedia sample and Lee
    news) or "teacher" (every source of ``data.sources``, at its fixed held-out fraction)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if corpus == "default":
        from nemo_minitron.data.corpus import load_default_corpus

        return list(getattr(load_default_corpus(validation_fraction), split))
    if corpus == "teacher":
        from nemo_minitron.data.teacher_corpus import VALIDATION_FRACTION, load_teacher_corpus

        if validation_fraction != VALIDATION_FRACTION:
            raise ValueError(f"the teacher corpus is split at {VALIDATION_FRACTION}, got {validation_fraction}")
        return list(getattr(load_teacher_corpus().splits(), split))
    raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")


def corpus_tokenizer(corpus: str) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer a corpus is trained with: the default SentencePiece, or the teacher's BPE."""
    from nemo_minitron.data.tokenizer import load_default_tokenizer, load_teacher_tokenizer

    if corpus not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {corpus!r}")
    return load_default_tokenizer() if corpus == "default" else load_teacher_tokenizer()


def cached_packed_corpus(split: str, seq_len: int, validation_fraction: float = 0.05,
                         corpus: str = "default") -> torch.LongTensor:
    """A corpus split, tokenized with the corpus's tokenizer and packed (cached: :func:`cached_packed`).

    The teacher corpus is packed with ``<s>`` before each document (the teacher starts every text
    from it, as lm-eval's rolling log-likelihood does); the default corpus without, as before.
    """
    docs = corpus_documents(corpus, split, validation_fraction)
    return cached_packed(docs, corpus_tokenizer(corpus), seq_len, f"{corpus}-{split}", add_bos=corpus == "teacher")
