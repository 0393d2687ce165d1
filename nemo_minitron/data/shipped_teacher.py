"""The teacher that ships inside the package (docs/teacher.md): where it is and what it is.

Every built-in demonstration (``make demo``, the tiny pipeline, the ablations, the tests) starts
from this checkpoint instead of training a teacher on the user's machine. It is an ordinary
Hugging Face folder (bf16 safetensors, config, the 8192-token BPE tokenizer) plus
``training_state.json``: the step it was saved at and the settings that reproduce it
(``scripts/train_teacher.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

#: The folder the teacher ships in, next to its tokenizer (``data/english-bpe-8k``).
SHIPPED_TEACHER_DIR = Path(__file__).resolve().parent / "teacher"


def shipped_teacher() -> Path:
    """The shipped teacher's folder; a clear error (and the fix) when the package lacks it."""
    from nemo_minitron.models import is_complete_checkpoint

    if not is_complete_checkpoint(SHIPPED_TEACHER_DIR):
        raise FileNotFoundError(
            f"the shipped teacher is missing from {SHIPPED_TEACHER_DIR} (a checkout or wheel without "
            "nemo_minitron/data/teacher/): reinstall the package from a full checkout, pass your own "
            "checkpoint (teacher_dir= / model_path=), or retrain it with scripts/train_teacher.py")
    return SHIPPED_TEACHER_DIR


def shipped_teacher_state() -> dict[str, Any]:
    """The ``training_state.json`` of the shipped teacher (step, tokens per step, settings)."""
    from nemo_minitron.train.longrun import STATE_FILE  # written next to the weights by HFSnapshot

    return json.loads((shipped_teacher() / STATE_FILE).read_text())


def describe_shipped_teacher() -> str:
    """One line for logs and reports: which teacher this is and how far it was trained."""
    state = shipped_teacher_state()
    step = int(state["step"])
    planned = int(state["config"]["train"]["max_steps"])
    tokens = step * int(state["tokens_per_step"])
    done = "finished" if step >= planned else f"snapshot of an unfinished run ({step}/{planned} steps)"
    return f"shipped NemotronH teacher, {tokens / 1e6:.1f}M training tokens, {done}"
