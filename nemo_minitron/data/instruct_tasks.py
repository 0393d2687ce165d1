"""Seeded, checkable instruction tasks a ~20M-parameter model can learn (the built-in SFT/RPO data).

Five tasks, each a one-turn chat whose answer a program checks (:func:`is_correct`):

- ``arithmetic``: "What is 7 + 2?" -> "9" (a + b, or a - b with a >= b; single digits)
- ``copy``: "Copy these words: cat sun door" -> "cat sun door" (2-4 words)
- ``reverse``: "Reverse these words: cat sun door" -> "door sun cat"
- ``kv_recall``: "Remember: cat=red, dog=blue, hen=gold. What is the value of dog?" -> "blue" (2-3 pairs)
- ``fact``: a passage of the offline corpus with one planted sentence ("The secret word is
  lake.") -> "What is the secret word in the passage?" -> "lake"

Rounds mirror the paper's two SFT-KD rounds (math/code first, then general chat):
round 1 = arithmetic + reverse + copy, round 2 = kv_recall + fact + copy.

Held-out evaluation: an example whose user text hashes (sha256) into the top 20% belongs to
the evaluation split and is never generated for training, so no evaluation prompt is ever seen
in training. For copy, reverse, kv_recall and fact the held-out prompts are also new problems
(new word lists, pairs, passages: fact passages come from the corpus's validation documents).
Arithmetic has only 155 distinct problems; its held-out prompts are new wordings of problems
that training also shows in the other wording ("What is 7 + 2?" vs "Compute 7 + 2."), i.e. it
measures whether the model learned the sums, not whether it can add unseen pairs (a ~20M
model trained for minutes memorises a table; it does not learn addition).
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, Optional

TASKS: tuple[str, ...] = ("arithmetic", "copy", "reverse", "kv_recall", "fact")
ROUND_TASKS: dict[int, tuple[str, ...]] = {
    1: ("arithmetic", "reverse", "copy"),  # "math/code-like"
    2: ("kv_recall", "fact", "copy"),  # "general chat"
}
SPLITS = ("train", "eval")
EVAL_FRACTION = 0.2
SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."

#: Small pools of short common words, each one token of the default tokenizer (checked in the
#: tests). Small on purpose: the models are untied (input and output embeddings differ), so copying
#: a word means learning that word's input -> output mapping; with few symbols each is seen often
#: enough for a ~20M model to learn the tasks in minutes of CPU (with ~50 words it did not).
KEYS = ("cat", "dog", "cow", "pig", "hen", "fish", "bird", "lion")
VALUES = ("red", "blue", "green", "black", "white", "pink", "gold", "gray", "brown", "yellow")
WORDS = ("sun", "moon", "star", "tree", "rock", "lake", "hill", "road", "door", "book", "cup", "box")


def _eval_bucket(key: str) -> bool:
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < EVAL_FRACTION


def in_eval_split(key: str) -> bool:
    """True when an example with this key belongs to the held-out evaluation split."""
    return _eval_bucket(key)


# --------------------------------------------------------------------------- passages
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@lru_cache(maxsize=2)
def _passages(split: str, max_words: int = 40) -> tuple[tuple[str, ...], ...]:
    """Short passages (lists of sentences) from the offline corpus split (train -> train docs)."""
    from nemo_minitron.data.corpus import load_default_corpus

    corpus = load_default_corpus()
    docs = corpus.train if split == "train" else corpus.validation
    out: list[tuple[str, ...]] = []
    for doc in docs:
        for paragraph in doc.split("\n"):
            sentences = [s.strip() for s in _SENTENCE.split(paragraph) if 3 <= len(s.split()) <= 30]
            i = 0
            while i < len(sentences):
                chunk, words = [], 0
                while i < len(sentences) and words + len(sentences[i].split()) <= max_words:
                    chunk.append(sentences[i])
                    words += len(sentences[i].split())
                    i += 1
                if not chunk:
                    i += 1
                    continue
                out.append(tuple(chunk))
    if not out:
        raise RuntimeError(f"the default corpus gave no passages for split={split!r}")
    return tuple(out)


# --------------------------------------------------------------------------- one example per task
def _arithmetic(rng: random.Random) -> tuple[str, str, str]:
    a, b = rng.randint(0, 9), rng.randint(0, 9)
    if rng.random() < 0.5:
        op, result = "+", a + b
    else:
        a, b = max(a, b), min(a, b)
        op, result = "-", a - b
    question = rng.choice(("What is {a} {op} {b}?", "Compute {a} {op} {b}.")).format(a=a, op=op, b=b)
    return question, str(result), question


def _word_list(rng: random.Random) -> list[str]:
    return rng.sample(WORDS, rng.randint(2, 4))


def _copy(rng: random.Random) -> tuple[str, str, str]:
    words = _word_list(rng)
    question = rng.choice(("Copy these words: {w}", "Repeat the words: {w}")).format(w=" ".join(words))
    return question, " ".join(words), question


def _reverse(rng: random.Random) -> tuple[str, str, str]:
    words = _word_list(rng)
    question = rng.choice(("Reverse these words: {w}", "Say the words backwards: {w}")).format(w=" ".join(words))
    return question, " ".join(reversed(words)), question


def _kv_pairs(rng: random.Random, n: int) -> list[tuple[str, str]]:
    return list(zip(rng.sample(KEYS, n), [rng.choice(VALUES) for _ in range(n)]))


def kv_facts_text(pairs: Sequence[tuple[str, str]]) -> str:
    return "Remember: " + ", ".join(f"{k}={v}" for k, v in pairs) + "."


def kv_question(key: str) -> str:
    return f"What is the value of {key}?"


def _kv_recall(rng: random.Random) -> tuple[str, str, str]:
    pairs = _kv_pairs(rng, rng.randint(2, 3))
    key, value = rng.choice(pairs)
    question = f"{kv_facts_text(pairs)} {kv_question(key)}"
    return question, value, question


def _fact(rng: random.Random, split: str) -> tuple[str, str, str]:
    passage = list(rng.choice(_passages(split)))
    noun = rng.choice(("word", "code", "name"))
    answer = rng.choice(WORDS) if noun != "code" else str(rng.randint(10, 99))
    passage.insert(rng.randint(0, len(passage)), f"The secret {noun} is {answer}.")
    question = f"{' '.join(passage)}\nWhat is the secret {noun} in the passage?"
    return question, answer, question


def make_example(task: str, rng: random.Random, split: str = "train", system_prob: float = 0.3) -> dict[str, Any]:
    """One record ``{"messages", "answer", "task"}`` of ``task`` in ``split`` (rejection-sampled
    so its key falls on the right side of the held-out partition)."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose from {TASKS}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be one of {SPLITS}")
    for _ in range(1000):
        if task == "fact":
            question, answer, key = _fact(rng, split)
        else:
            question, answer, key = {"arithmetic": _arithmetic, "copy": _copy, "reverse": _reverse,
                                     "kv_recall": _kv_recall}[task](rng)
        if in_eval_split(key) == (split == "eval"):
            break
    else:  # pragma: no cover - the partition is 20/80, 1000 misses cannot happen
        raise RuntimeError(f"could not draw a {split} example of {task}")
    messages = [{"role": "system", "content": SYSTEM_PROMPT}] if rng.random() < system_prob else []
    messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "answer": answer, "task": task}


def generate_tasks(tasks: Sequence[str], n: int, seed: int = 0, split: str = "train") -> list[dict[str, Any]]:
    """``n`` records cycling through ``tasks`` (equal shares), from ``random.Random(seed)``."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    rng = random.Random(f"{seed}:{split}:{','.join(tasks)}")
    return [make_example(tasks[i % len(tasks)], rng, split) for i in range(n)]


def round_records(round: int, n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Training records of SFT round ``round`` (1: arithmetic/reverse/copy, 2: kv_recall/fact/copy)."""
    if round not in ROUND_TASKS:
        raise ValueError(f"round={round} must be one of {sorted(ROUND_TASKS)}")
    return generate_tasks(ROUND_TASKS[round], n, seed=seed + 7919 * round, split="train")


def eval_sets(n_per_task: int, seed: int = 0, tasks: Sequence[str] = TASKS) -> dict[str, list[dict[str, Any]]]:
    """Held-out evaluation records, ``n_per_task`` per task."""
    return {task: generate_tasks((task,), n_per_task, seed=seed, split="eval") for task in tasks}


# --------------------------------------------------------------------------- checking
_INT = re.compile(r"-?\d+")


def normalize_answer(text: str) -> str:
    """Lowercase, whitespace collapsed, surrounding punctuation stripped."""
    return " ".join(text.lower().replace(",", " ").split()).strip(" .!?\"'")


def is_correct(task: str, prediction: Optional[str], answer: str) -> bool:
    """Whether ``prediction`` answers correctly: exact match after :func:`normalize_answer`
    (case, spacing, commas and end punctuation do not matter), integers compared as numbers.
    Extra words count as wrong (``"9 apples"`` is not ``"9"``)."""
    if task not in TASKS and not task.startswith("long_"):
        raise ValueError(f"unknown task {task!r}")
    if prediction is None:
        return False
    p, a = normalize_answer(prediction), normalize_answer(answer)
    if _INT.fullmatch(p) and _INT.fullmatch(a):
        return int(p) == int(a)
    return p == a
