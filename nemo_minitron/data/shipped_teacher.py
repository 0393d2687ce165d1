"""The teacher that ships inside the package (docs/teacher.md): where it is and what it is.

Every built-in demonstration (``make demo``, the tiny pipeline, the ablations, the tests) starts
from this checkpoint instead of training a teacher on the user's machine. It is an ordinary
Hugging Face folder (bf16 safetensors, config, the 8192-token BPE tokenizer) plus
``training_state.json``: the step it was saved at and the settings that reproduce it
(``scripts/train_teacher.py``).
"""

from __future__ import annotations

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
    from nemo_minitron.train.longrun import read_state  # written next to the weights by HFSnapshot

    return read_state(shipped_teacher())


def planned_steps(state: dict[str, Any]) -> int:
    """The step a snapshot's run ends at: a warm-started run plans ``max_steps`` from its ``first_step``."""
    return int(state.get("first_step") or 0) + int(state["config"]["train"]["max_steps"])


def ship_snapshot(snapshot: Path, target: Path = SHIPPED_TEACHER_DIR, force: bool = False) -> dict[str, Any]:
    """Make the training snapshot ``snapshot`` the shipped teacher (``target``, replaced atomically).

    Its curve keeps the shipped teacher's records up to the step the snapshot's run started from,
    so a run continued on a new machine ships its whole history. Refuses a snapshot that is not
    newer than the shipped one (``force`` overrides) and a folder that is not a snapshot.
    Returns the new ``training_state.json``.
    """
    import shutil

    from nemo_minitron.atomic import atomic_directory
    from nemo_minitron.train.longrun import CURVE_FILE, STATE_FILE, continued_curve, read_state, write_curve

    snapshot, target = Path(snapshot), Path(target)
    if not (snapshot / STATE_FILE).is_file():
        raise FileNotFoundError(f"{snapshot} is not a training snapshot (no {STATE_FILE}); "
                                "scripts/train_teacher.py writes them to <run-dir>/snapshots")
    state = read_state(snapshot)
    if (target / STATE_FILE).is_file() and not force:
        shipped = int(read_state(target)["step"])
        if shipped >= int(state["step"]):
            raise ValueError(f"the shipped teacher is at step {shipped}, the snapshot at {state['step']}: "
                             "nothing newer to ship (force=True replaces it anyway)")
    with atomic_directory(target) as tmp:
        for item in snapshot.iterdir():
            if item.is_file():
                shutil.copy2(item, tmp / item.name)
        write_curve(tmp / CURVE_FILE,
                    continued_curve(target / CURVE_FILE, snapshot / CURVE_FILE, int(state.get("first_step") or 0)))
    return state


def describe_shipped_teacher() -> str:
    """One line for logs and reports: which teacher this is and how far it was trained."""
    state = shipped_teacher_state()
    step = int(state["step"])
    planned = planned_steps(state)
    tokens = step * int(state["tokens_per_step"])
    done = "finished" if step >= planned else f"snapshot of an unfinished run ({step}/{planned} steps)"
    members = state.get("averaged_from")  # scripts/train_teacher.py --ship-average
    if members:
        done += ", the mean of the weights at steps " + ", ".join(str(m["step"]) for m in members)
    return f"shipped NemotronH teacher, {tokens / 1e6:.1f}M training tokens, {done}"
