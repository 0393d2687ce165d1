"""Chat data for post-training: conversations and preference pairs as JSONL, a chat template,
assistant-only loss masks, right-padded batches.

Formats (one JSON object per line, blank lines allowed)::

    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...], ...}
    {"prompt": [messages...] | "text", "chosen": "...", "rejected": "...",
     "reward_chosen": 1.0, "reward_rejected": 0.0}          # rewards optional

Every malformed record raises ``ValueError("path:line: ...")``.

The chat template uses plain-text turn markers, since the default tokenizer has no chat
tokens::

    <s><|system|>\\nYou are ...\\n<|user|>\\nWhat is 2 + 3?\\n<|assistant|>\\n5</s><|user|>\\n...

Token ids are produced *segment by segment* (BOS, each turn header, each content, the EOS that
ends an assistant turn), so the loss mask is exact by construction: it is 1 on the tokens of
assistant contents and on the EOS closing each assistant turn, 0 everywhere else, however the
tokenizer would have merged characters across a boundary. Training (:func:`tokenize_conversation`)
and generation (:func:`tokenize_prompt`) use the same procedure. The Jinja template (saved with
the tokenizer, :func:`with_chat_template`) renders the same *text* for external tools; tokenizing
that text in one piece can differ from the segment-wise ids at turn boundaries (SentencePiece
adds a word-start marker per segment), so use these functions with models trained here.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import torch

from nemo_minitron.atomic import atomic_file
from nemo_minitron.data.files import iter_jsonl

ROLES = ("system", "user", "assistant")

#: The Jinja chat template: plain-text role markers, EOS closes each assistant turn.
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% if message['role'] == 'assistant' %}{{ eos_token }}{% else %}{{ '\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
)

Messages = list[dict[str, str]]
PathLike = Union[str, "os.PathLike[str]"]


def header(role: str) -> str:
    """The text that opens a turn of ``role``."""
    return f"<|{role}|>\n"


# --------------------------------------------------------------------------- validation / loading
def validate_messages(messages: Any, where: str = "conversation") -> Messages:
    """Check a ``messages`` list; returns it as plain ``{"role", "content"}`` dicts.

    Raises ``ValueError(f"{where}: ...")`` for a non-list, an empty list, a message that is not
    an object, an unknown role, missing or non-string content, or no assistant turn.
    """
    if not isinstance(messages, list):
        raise ValueError(f"{where}: 'messages' must be a list of {{role, content}} objects, "
                         f"got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"{where}: 'messages' is empty")
    out: Messages = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise ValueError(f"{where}: message {i} must be an object, got {type(message).__name__}")
        role = message.get("role")
        if role not in ROLES:
            raise ValueError(f"{where}: message {i} has role {role!r}; expected one of {', '.join(ROLES)}")
        if "content" not in message:
            raise ValueError(f"{where}: message {i} ({role}) has no 'content'")
        content = message["content"]
        if not isinstance(content, str):
            raise ValueError(f"{where}: message {i} ({role}) content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError(f"{where}: conversation has no assistant turn (nothing to train on)")
    return out


def load_chat_jsonl(path: PathLike) -> list[dict[str, Any]]:
    """Records of a chat JSONL file; each has validated ``messages`` (other fields are kept)."""
    records = []
    for lineno, record in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if "messages" not in record:
            fields = ", ".join(map(repr, record)) or "none"
            raise ValueError(f"{where}: record has no 'messages' field (fields: {fields})")
        records.append({**record, "messages": validate_messages(record["messages"], where)})
    return records


@dataclass
class PreferencePair:
    """One preference example: a prompt (messages ending with a user turn), two answers, rewards."""

    prompt: Messages
    chosen: str
    rejected: str
    reward_chosen: Optional[float] = None
    reward_rejected: Optional[float] = None

    def to_record(self) -> dict[str, Any]:
        rec: dict[str, Any] = {"prompt": self.prompt, "chosen": self.chosen, "rejected": self.rejected}
        if self.reward_chosen is not None:
            rec["reward_chosen"], rec["reward_rejected"] = self.reward_chosen, self.reward_rejected
        return rec


def _prompt_messages(prompt: Any, where: str) -> Messages:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    if not isinstance(prompt, list):
        raise ValueError(f"{where}: 'prompt' must be a string or a list of messages, got {type(prompt).__name__}")
    # validate roles/content with a dummy assistant turn appended, then drop it
    msgs = validate_messages(prompt + [{"role": "assistant", "content": ""}], where)[:-1]
    if not msgs or msgs[-1]["role"] != "user":
        raise ValueError(f"{where}: 'prompt' must end with a user turn")
    return msgs


def parse_preference_record(record: dict[str, Any], where: str) -> PreferencePair:
    """A :class:`PreferencePair` from one JSON record; errors start with ``where``."""
    for key in ("prompt", "chosen", "rejected"):
        if key not in record:
            raise ValueError(f"{where}: preference record has no {key!r} field")
    for key in ("chosen", "rejected"):
        if not isinstance(record[key], str):
            raise ValueError(f"{where}: {key!r} must be a string, got {type(record[key]).__name__}")
    rewards = [record.get("reward_chosen"), record.get("reward_rejected")]
    if (rewards[0] is None) != (rewards[1] is None):
        raise ValueError(f"{where}: give both reward_chosen and reward_rejected, or neither")
    for r in rewards:
        if r is not None and (isinstance(r, bool) or not isinstance(r, (int, float))):
            raise ValueError(f"{where}: rewards must be numbers, got {r!r}")
    return PreferencePair(_prompt_messages(record["prompt"], where), record["chosen"], record["rejected"],
                          None if rewards[0] is None else float(rewards[0]),
                          None if rewards[1] is None else float(rewards[1]))


def load_preference_jsonl(path: PathLike) -> list[PreferencePair]:
    """Preference pairs of a JSONL file (format in the module docstring)."""
    return [parse_preference_record(record, f"{path}:{lineno}") for lineno, record in iter_jsonl(path)]


def write_jsonl(records: Iterable[dict[str, Any]], path: PathLike) -> Path:
    """Write records as JSON Lines atomically (temporary file + rename)."""
    path = Path(path)
    with atomic_file(path) as tmp, tmp.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


# --------------------------------------------------------------------------- template / tokenizer
def with_chat_template(tokenizer: Any) -> Any:
    """A copy of ``tokenizer`` with :data:`CHAT_TEMPLATE` and right padding (the shared cached
    default tokenizer is never mutated). ``save_pretrained`` on the copy saves the template."""
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "right"
    if tok.pad_token is None:
        tok.pad_token = tok.unk_token if tok.unk_token is not None else tok.eos_token
    return tok


def render_conversation(messages: Messages, bos_token: str = "<s>", eos_token: str = "</s>",
                        add_generation_prompt: bool = False) -> str:
    """The template's text, in Python (the tests check it equals the Jinja rendering)."""
    parts = [bos_token]
    for m in messages:
        parts.append(header(m["role"]) + m["content"] + (eos_token if m["role"] == "assistant" else "\n"))
    if add_generation_prompt:
        parts.append(header("assistant"))
    return "".join(parts)


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"]) if text else []


def _special_id(tokenizer: Any, name: str) -> int:
    value = getattr(tokenizer, f"{name}_token_id", None)
    if value is None:
        raise ValueError(f"the tokenizer has no {name} token; the chat format needs one")
    return int(value)


@dataclass
class TokenizedConversation:
    """Ids, loss mask and, per message, its content's token span ``[start, end)``."""

    input_ids: list[int]
    loss_mask: list[int]
    content_spans: list[tuple[int, int]]


def tokenize_segments(tokenizer: Any, messages: Messages, add_generation_prompt: bool = False,
                      bos: bool = True) -> TokenizedConversation:
    """Segment-by-segment tokenization without truncation (see the module docstring)."""
    ids: list[int] = [_special_id(tokenizer, "bos")] if bos else []
    mask: list[int] = [0] * len(ids)
    eos = _special_id(tokenizer, "eos")
    spans: list[tuple[int, int]] = []
    footer = _encode(tokenizer, "\n")
    for m in messages:
        head = _encode(tokenizer, header(m["role"]))
        ids += head
        mask += [0] * len(head)
        body = _encode(tokenizer, m["content"])
        trainable = int(m["role"] == "assistant")
        spans.append((len(ids), len(ids) + len(body)))
        ids += body
        mask += [trainable] * len(body)
        if trainable:
            ids.append(eos)
            mask.append(1)
        else:
            ids += footer
            mask += [0] * len(footer)
    if add_generation_prompt:
        head = _encode(tokenizer, header("assistant"))
        ids += head
        mask += [0] * len(head)
    return TokenizedConversation(ids, mask, spans)


def tokenize_conversation(tokenizer: Any, messages: Messages,
                          max_len: Optional[int] = None) -> tuple[list[int], list[int]]:
    """``(input_ids, loss_mask)`` of a conversation; ``loss_mask`` is 1 exactly on assistant
    content tokens and the EOS ending each assistant turn. ``max_len`` truncates on the right."""
    tc = tokenize_segments(tokenizer, messages)
    if max_len is not None:
        if max_len < 2:
            raise ValueError(f"max_len={max_len} must be >= 2")
        return tc.input_ids[:max_len], tc.loss_mask[:max_len]
    return tc.input_ids, tc.loss_mask


def prompt_messages(messages: Messages) -> Messages:
    """The messages before the last assistant turn (what a model is asked to continue)."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def tokenize_prompt(tokenizer: Any, messages: Messages) -> list[int]:
    """Ids of ``messages`` (no assistant answer at the end) followed by the assistant header,
    ready for generation. Equal to the prefix of :func:`tokenize_conversation` of the full chat."""
    return tokenize_segments(tokenizer, messages, add_generation_prompt=True).input_ids


def tokenize_prompt_response(tokenizer: Any, prompt: Messages, response: str,
                             max_len: Optional[int] = None) -> tuple[list[int], list[int]]:
    """Ids and mask of ``prompt`` + one assistant ``response`` (mask 1 on the response + EOS)."""
    return tokenize_conversation(tokenizer, prompt + [{"role": "assistant", "content": response}], max_len)


# --------------------------------------------------------------------------- batching
def pad_right(sequences: Sequence[Sequence[int]], pad_value: int, length: Optional[int] = None) -> torch.Tensor:
    """A ``[n, length]`` long tensor: each sequence followed by ``pad_value``."""
    width = length if length is not None else max((len(s) for s in sequences), default=0)
    out = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"sequence {i} has {len(seq)} tokens, more than the batch width {width}")
        out[i, :len(seq)] = torch.as_tensor(list(seq), dtype=torch.long)
    return out


def chat_collate(items: Sequence[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: ``input_ids`` (pad ``pad_id``), ``loss_mask`` and ``attention_mask``
    (0 on padding). Right padding is exact for causal models: no real token attends to a pad."""
    ids = [list(it["input_ids"]) for it in items]
    return {
        "input_ids": pad_right(ids, pad_id),
        "loss_mask": pad_right([list(it["loss_mask"]) for it in items], 0),
        "attention_mask": pad_right([[1] * len(s) for s in ids], 0),
    }


class ChatDataset(torch.utils.data.Dataset):
    """Tokenized conversations (``input_ids`` / ``loss_mask`` lists). Conversations whose
    assistant tokens are all cut off by ``max_len`` are dropped (``num_dropped`` counts them)."""

    def __init__(self, conversations: Sequence[Messages], tokenizer: Any, max_len: Optional[int] = None):
        self.items: list[dict[str, list[int]]] = []
        self.num_dropped = 0
        for messages in conversations:
            ids, mask = tokenize_conversation(tokenizer, messages, max_len)
            if sum(mask[1:]) == 0:
                self.num_dropped += 1
                continue
            self.items.append({"input_ids": ids, "loss_mask": mask})
        if not self.items:
            raise ValueError(f"no conversation has an assistant token within max_len={max_len}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        return self.items[index]


def pad_id_of(tokenizer: Any) -> int:
    """The padding id (the tokenizer's pad token, else unk, else eos)."""
    for name in ("pad", "unk", "eos"):
        value = getattr(tokenizer, f"{name}_token_id", None)
        if value is not None:
            return int(value)
    raise ValueError("the tokenizer has no pad, unk or eos token to pad with")
