"""What every stage checks first, before loading any model: its inputs exist and its output is safe.

One call at the top of each stage: input checkpoints (config, weights, family), data files
(exist, non-empty, known type) and the output folder (:func:`~nemo_minitron.outputs.check_output_path`:
never an input or a folder of someone else's files). Reading the data itself also happens before
the models load in every stage, so a malformed record (``file.jsonl:17: invalid JSON``) fails in
seconds, not after an 8B model has loaded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Optional, Sequence

from nemo_minitron.data.files import SUPPORTED_EXTENSIONS, check_data_files
from nemo_minitron.models.io import check_checkpoint
from nemo_minitron.outputs import PathArg, check_output_path

#: Extensions of chat / preference data (JSON Lines).
JSONL = (".jsonl", ".json")


def check_stage_paths(stage: str, save_path: str, markers: Iterable[str], overwrite: bool = False, *,
                      checkpoints: Optional[Mapping[str, PathArg]] = None,
                      data: Optional[Mapping[str, PathArg]] = None,
                      data_extensions: Sequence[str] = tuple(SUPPORTED_EXTENSIONS),
                      other_inputs: Optional[Mapping[str, PathArg]] = None, any_family: bool = False,
                      argument: str = "save_path") -> None:
    """Refuse bad inputs or a dangerous output of ``stage`` before any heavy work.

    ``checkpoints`` / ``data``: argument name -> path (``None``: not given); ``other_inputs``: more
    paths the output must not contain (score files, caches, work folders). ``markers``: what an
    earlier output of this stage holds (it may be replaced; any other non-empty folder only with
    ``overwrite``).
    """
    for name, path in (checkpoints or {}).items():
        if path:
            check_checkpoint(path, name, any_family=any_family)
    for name, path in (data or {}).items():
        check_data_files(path, name, data_extensions)
    inputs = {**(checkpoints or {}), **(data or {}), **(other_inputs or {})}
    check_output_path(save_path, stage, markers, inputs, overwrite=overwrite, argument=argument)
