"""Long-context SFT data: concatenated conversations with related turns placed far apart (paper 4.3).

The paper builds its context-extension data from the general-chat data of SFT round 2: turns
are concatenated and related turns are moved far apart, with the total length drawn at random
between 128k and 512k tokens. Here one training sequence is one multi-turn conversation::

    user:      Remember: cat=red, dog=blue, hen=gold.        <- the evidence (first turn)
    assistant: OK.
    user/assistant turns of round-2 chat tasks ...            <- filler, until the drawn length
    user:      What is the value of dog?                      <- the question (last turn)
    assistant: blue

The total length is drawn uniformly in ``[min_len, max_len]`` tokens (a few hundred to a few
thousand for the tiny default). Every assistant turn is trained on (filler answers included).
The token positions of the evidence turn and of the question are returned, so callers (and
tests) can check how far apart they are. No filler turn mentions the asked key, so the answer
can only come from the first turn. Token counts are exact: the chat format tokenizes
segment by segment, so a conversation's length is the sum of its turns' lengths.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from nemo_minitron.data.chat import Messages, tokenize_segments
from nemo_minitron.data.instruct_tasks import (KEYS, ROUND_TASKS, VALUES, kv_facts_text, kv_question,
                                               make_example)

ACK = "OK."
LONG_TASK = "long_kv_recall"


@dataclass
class LongContextSample:
    """One long conversation and where its evidence, question and answer lie (token positions)."""

    messages: Messages
    input_ids: list[int]
    loss_mask: list[int]
    target_len: int
    evidence_span: tuple[int, int]  # [start, end) tokens of the user content stating the facts
    question_span: tuple[int, int]  # [start, end) tokens of the final user question
    answer_span: tuple[int, int]  # [start, end) tokens of the final answer (without EOS)
    key: str
    answer: str
    filler_turns: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def distance(self) -> int:
        """Tokens strictly between the end of the evidence and the start of the question."""
        return self.question_span[0] - self.evidence_span[1]

    def to_record(self) -> dict[str, Any]:
        """An eval/JSONL record: messages, answer, task and the evidence distance."""
        return {"messages": self.messages, "answer": self.answer, "task": LONG_TASK, "distance": self.distance,
                "length": len(self.input_ids)}


def _turn_len(tokenizer: Any, role: str, content: str, cache: dict[str, int]) -> int:
    key = f"{role}\x00{content}"
    if key not in cache:
        # a turn's tokens = header + content + (EOS or newline footer); BOS counted once per sequence
        cache[key] = len(tokenize_segments(tokenizer, [{"role": role, "content": content}], bos=False).input_ids)
    return cache[key]


def build_long_sample(tokenizer: Any, rng: random.Random, min_len: int, max_len: int, split: str = "train",
                      filler_tasks: Sequence[str] = ROUND_TASKS[2], num_pairs: int = 3,
                      min_distance: Optional[int] = None) -> LongContextSample:
    """One long conversation of about ``L ~ U[min_len, max_len]`` tokens (never more than ``L``).

    Raises ``ValueError`` when the evidence cannot be placed at least ``min_distance`` tokens
    before the question (default: half of ``min_len``) within ``L`` tokens.
    """
    if not 0 < min_len <= max_len:
        raise ValueError(f"need 0 < min_len <= max_len, got min_len={min_len}, max_len={max_len}")
    target = rng.randint(min_len, max_len)
    need = min_len // 2 if min_distance is None else min_distance
    pairs = list(zip(rng.sample(KEYS, num_pairs), [rng.choice(VALUES) for _ in range(num_pairs)]))
    key, answer = rng.choice(pairs)
    head = [{"role": "user", "content": kv_facts_text(pairs)}, {"role": "assistant", "content": ACK}]
    tail = [{"role": "user", "content": kv_question(key)}, {"role": "assistant", "content": answer}]
    cache: dict[str, int] = {}
    used = 1 + sum(_turn_len(tokenizer, m["role"], m["content"], cache) for m in head + tail)  # 1 = BOS
    if used > target:
        raise ValueError(f"max length {target} is too short for even the facts and the question ({used} tokens)")
    filler: Messages = []
    misses = 0
    while misses < 20:
        example = make_example(rng.choice(list(filler_tasks)), rng, split, system_prob=0.0)
        turns = example["messages"]
        if any(f"{key}=" in m["content"] for m in turns):
            continue  # the asked key may appear only in the evidence (no short-range shortcut)
        n = sum(_turn_len(tokenizer, m["role"], m["content"], cache) for m in turns)
        if used + n > target:
            misses += 1  # try a shorter one; stop after several misses
            continue
        filler += turns
        used += n
    messages = head + filler + tail
    tc = tokenize_segments(tokenizer, messages)
    if len(tc.input_ids) != used:  # pragma: no cover - additivity of the segment-wise format
        raise RuntimeError(f"token count {len(tc.input_ids)} != {used}: segment lengths are not additive")
    evidence, question, final = tc.content_spans[0], tc.content_spans[-2], tc.content_spans[-1]
    sample = LongContextSample(messages, tc.input_ids, tc.loss_mask, target, evidence, question, final, key,
                               answer, filler_turns=len(filler) // 2)
    if sample.distance < need:
        raise ValueError(f"evidence only {sample.distance} tokens before the question (< {need}); "
                         f"raise min_len/max_len (drawn length {target})")
    return sample


def build_long_dataset(tokenizer: Any, n: int, min_len: int, max_len: int, seed: int = 0, split: str = "train",
                       filler_tasks: Sequence[str] = ROUND_TASKS[2], num_pairs: int = 3,
                       min_distance: Optional[int] = None) -> list[LongContextSample]:
    """``n`` long conversations (seeded). ``split="eval"`` draws filler from held-out examples."""
    rng = random.Random(f"long:{seed}:{split}")
    return [build_long_sample(tokenizer, rng, min_len, max_len, split, filler_tasks, num_pairs, min_distance)
            for _ in range(n)]


def long_range_eval_set(tokenizer: Any, n: int, min_len: int, max_len: int, seed: int = 0,
                        num_pairs: int = 3) -> list[dict[str, Any]]:
    """Held-out long-range recall records (``task="long_kv_recall"``): answer the last question
    from facts stated ``distance`` tokens earlier. Score with ``is_correct``."""
    return [s.to_record() for s in build_long_dataset(tokenizer, n, min_len, max_len, seed=seed + 104729,
                                                      split="eval", num_pairs=num_pairs)]


__all__ = ["ACK", "LONG_TASK", "LongContextSample", "build_long_sample", "build_long_dataset",
           "long_range_eval_set"]
