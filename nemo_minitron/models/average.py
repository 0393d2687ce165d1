"""Checkpoint averaging: the uniform mean of the weights of checkpoints of one shape.

Checkpoints that descend from one another (the ends of successive training cycles, or the last
snapshots of one run) sit in one basin of the loss, so their mean is a model too, and often a
better one than any of them on held-out text (issue #17: the shipped teacher is the mean of the
ends of three cycles; docs/teacher.md). Averaging unrelated models gives noise: nothing here can
tell, so measure the result on held-out data that did not choose it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable, Sequence

import torch

from ..outputs import check_output_path
from .io import is_complete_checkpoint, load_model, load_tokenizer, save_checkpoint

#: Written into the averaged checkpoint: which checkpoints, in which order.
AVERAGED_FILE = "averaged_from.json"


def average_checkpoints(paths: Sequence[str | os.PathLike], save_path: str | os.PathLike,
                        extra: Callable[[Path], None] | None = None, overwrite: bool = False) -> Path:
    """Save the mean of the checkpoints ``paths`` (all the same shape) into ``save_path``.

    The sum is taken in float32, one checkpoint at a time; the result has the last checkpoint's
    config, generation config, tokenizer and dtypes (so a bf16 input gives a bf16 output, and the
    tensors a family keeps in float32 stay so). ``extra(folder)`` may add files before the folder
    is renamed into place. Refused before anything is loaded: fewer than two paths, a missing or
    unfinished checkpoint, a ``save_path`` that is an input or holds other files.
    """
    if len(paths) < 2:
        raise ValueError(f"average_checkpoints: give at least two checkpoints, got {len(paths)}")
    for path in paths:
        if not is_complete_checkpoint(path):
            raise FileNotFoundError(f"average_checkpoints: {path} holds no finished checkpoint "
                                    "(config.json and *.safetensors)")
    out = check_output_path(save_path, "average", markers=(AVERAGED_FILE,),
                            inputs={f"paths[{i}]": str(p) for i, p in enumerate(paths)}, overwrite=overwrite)
    total: dict[str, torch.Tensor] = {}
    for i, path in enumerate(paths):
        state = load_model(path, dtype=torch.float32).state_dict()
        if i and (state.keys() != total.keys() or any(state[k].shape != total[k].shape for k in state)):
            differing = sorted(k for k in state.keys() | total.keys()
                               if k not in state or k not in total or state[k].shape != total[k].shape)
            raise ValueError(f"average_checkpoints: {path} is not the shape of {paths[0]} "
                             f"(tensors {differing[:4]}{' ...' if len(differing) > 4 else ''} differ)")
        for name, tensor in state.items():
            total[name] = total[name] + tensor if i else tensor.clone()
    model = load_model(paths[-1], dtype="auto")  # the saved dtypes
    own = model.state_dict()
    model.load_state_dict({name: (total[name] / len(paths)).to(own[name].dtype) for name in own})
    tokenizer = None
    try:
        tokenizer = load_tokenizer(paths[-1])
    except (OSError, ValueError):  # a checkpoint without a tokenizer
        pass

    def write(folder: Path) -> None:
        (folder / AVERAGED_FILE).write_text(json.dumps([str(Path(p).resolve()) for p in paths], indent=1) + "\n")
        if extra is not None:
            extra(folder)

    return save_checkpoint(model, out, tokenizer=tokenizer, extra=write)
