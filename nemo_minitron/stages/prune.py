"""``nemo-minitron prune``: prune a checkpoint folder end to end: check targets, score, plan, trim, save.

Everything a later step may want is saved with the pruned model: the plan (which source
indices survive), the importance scores (to re-prune to another target without forward
passes, via ``scores_path``), a plot of layer importance and a summary.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Optional

import torch

from nemo_minitron.arch import HybridArch
from nemo_minitron.models import load_config, load_model, load_tokenizer, save_checkpoint
from nemo_minitron.models.io import dtype_name, output_dtype
from nemo_minitron.prune.config import PruningConfig
from nemo_minitron.prune.importance import SCORES_FILE, ImportanceScores
from nemo_minitron.prune.oneshot import prune_model
from nemo_minitron.prune.plot import plot_layer_importance

from ._paths import check_stage_paths

log = logging.getLogger(__name__)
PLAN_FILE = "pruning_plan.json"
SUMMARY_FILE = "prune_summary.json"
PLOT_FILE = "layer_importance.png"


def _pick_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def prune(model_path: str, save_path: str, pruning_config: Optional[PruningConfig] = None,
          calib_data_path: Optional[str] = None, num_samples: int = 64, seq_length: int = 256,
          batch_size: int = 4, layer_importance_samples: int = 64, scores_path: Optional[str] = None,
          device: str = "auto", dtype: Optional[str] = None, seed: int = 0, overwrite: bool = False) -> dict[str, Any]:
    """Prune the HF checkpoint at ``model_path`` into ``save_path``; returns the summary.

    ``dtype``: the dtype the model is pruned and saved in; by default it is scored in float32
    and saved in the source checkpoint's dtype. ``save_path`` may replace an earlier prune
    output; any other non-empty folder needs ``overwrite=True``, and an input never.
    """
    config = pruning_config or PruningConfig()
    source = HybridArch.from_hf_config(load_config(model_path))
    config.check(source)  # fail on bad targets before loading anything heavy
    scores = ImportanceScores.load(scores_path) if scores_path else None
    if scores is not None and scores.arch != source:
        raise ValueError(f"scores_path={scores_path} was computed for {scores.arch.describe()}, "
                         f"not for this model ({source.describe()})")
    check_stage_paths("prune", save_path, (SUMMARY_FILE,), overwrite, checkpoints={"model_path": model_path},
                      data={"calib_data_path": calib_data_path}, other_inputs={"scores_path": scores_path})
    save_dtype = output_dtype(dtype, model_path)
    start = time.perf_counter()
    tokenizer = load_tokenizer(model_path)
    calibration = None
    if scores is None:  # read (and check) the data before the weights load
        from nemo_minitron.data.tokens import calibration_tokens

        calibration = calibration_tokens(tokenizer, num_samples, seq_length, calib_data_path, seed=seed)
    model = load_model(model_path, dtype=torch.float32 if dtype is None else save_dtype, device=_pick_device(device))
    pruned, plan, scores = prune_model(model, config, calibration, scores, batch_size=batch_size,
                                       layer_importance_samples=layer_importance_samples)
    summary = {
        "model_path": str(model_path), "source": source.describe(), "target": plan.target.describe(),
        "source_params": source.num_params(), "target_params": plan.target.num_params(),
        "kept_layers": plan.kept_layers, "pruning_config": config.__dict__,
        "calibration": ({"reused_scores": scores_path, **scores.meta} if scores_path else
                        {"data": calib_data_path or "default offline corpus", "num_samples": num_samples,
                         "seq_length": seq_length}),
        "dtype": dtype_name(save_dtype), "seconds": round(time.perf_counter() - start, 2),
    }

    def write_extras(folder: Path) -> None:
        plan.save(folder / PLAN_FILE)
        scores.save(folder / SCORES_FILE)
        if scores.layers:
            plot_layer_importance(scores, folder / PLOT_FILE)
        (folder / SUMMARY_FILE).write_text(json.dumps(summary, indent=1))

    save_checkpoint(pruned, save_path, tokenizer=tokenizer, extra=write_extras, source=model_path, dtype=save_dtype)
    log.info("pruned %s -> %s, saved to %s", summary["source"], summary["target"], save_path)
    return summary
