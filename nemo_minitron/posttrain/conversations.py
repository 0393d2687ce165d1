"""Chat data of the SFT stages: the user's chat JSONL files or a built-in default."""

from __future__ import annotations

from typing import Any, Callable, Optional


def load_conversations(data_path: Optional[str],
                       default: Callable[[], list[dict[str, Any]]]) -> list[list[dict[str, str]]]:
    """The ``messages`` of chat JSONL files (``data_path``: comma-separated), else of ``default()``."""
    from nemo_minitron.data.chat import load_chat_jsonl

    if data_path:
        records: list[dict[str, Any]] = []
        for path in [p.strip() for p in str(data_path).split(",") if p.strip()]:
            records += load_chat_jsonl(path)
    else:
        records = default()
    return [r["messages"] for r in records]
