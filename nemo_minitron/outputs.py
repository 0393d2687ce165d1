"""The one guard every writing stage calls before it loads anything: may ``save_path`` be written?

Outputs are written atomically (:mod:`nemo_minitron.atomic`): the new folder *replaces* whatever
was at ``save_path``. That is right for a rerun of the same stage and wrong everywhere else: a
``save_path`` equal to the source checkpoint, or a parent of it, would delete the input, and a
folder holding the user's own files would lose them. :func:`check_output_path` refuses those
cases up front, so nothing is loaded, trained or written first. Nothing here imports the rest
of the package.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Optional, Union

PathArg = Union[str, "os.PathLike[str]", None]


class OutputPathError(ValueError):
    """``save_path`` / ``output_dir`` would destroy an input or files this stage did not write."""


def split_paths(value: PathArg) -> list[str]:
    """The paths of one argument: ``None`` -> [], ``"a.jsonl,b.jsonl"`` -> two paths."""
    if value is None:
        return []
    return [p.strip() for p in str(value).split(",") if p.strip()]


def _resolved(path: Union[str, "os.PathLike[str]"]) -> Path:
    return Path(path).expanduser().resolve()


def _within(inner: Path, outer: Path) -> bool:
    return inner == outer or outer in inner.parents


def check_output_path(save_path: Union[str, "os.PathLike[str]"], stage: str, markers: Iterable[str],
                      inputs: Optional[Mapping[str, PathArg]] = None, overwrite: bool = False,
                      argument: str = "save_path") -> Path:
    """Refuse a ``save_path`` that writing ``stage``'s output there would make lose data.

    Refused always: a ``save_path`` equal to or containing any of ``inputs`` (argument name ->
    path or comma-separated paths; ``None`` values are skipped), and one that is a file.
    Refused unless ``overwrite``: a non-empty folder holding none of ``markers`` (the files or
    folders a finished -- or, for resumable stages, started -- output of ``stage`` holds, such
    as its ``<stage>_summary.json``), i.e. a folder this stage did not write. An earlier output
    of the same stage may be replaced (that is a rerun). Returns the resolved path.
    """
    target = _resolved(save_path)
    for name, value in (inputs or {}).items():
        for path in split_paths(value):
            if _within(_resolved(path), target):
                same = "is" if _resolved(path) == target else "contains"
                raise OutputPathError(
                    f"{stage}: {argument}={save_path} {same} the input {name}={path}; writing there would "
                    f"delete it. Choose another {argument}")
    if target.is_file():
        raise OutputPathError(f"{stage}: {argument}={save_path} is a file; give a folder path")
    if not overwrite and target.is_dir() and any(target.iterdir()):
        markers = tuple(markers)
        if not any((target / marker).exists() for marker in markers):
            raise OutputPathError(
                f"{stage}: {argument}={save_path} is a non-empty folder that is not an output of this stage "
                f"(it has no {' / '.join(markers)}); its contents would be replaced. Choose an empty or new "
                f"folder, or pass overwrite=true to replace it")
    return target
