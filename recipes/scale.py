"""The paper's real-scale recipes, one factory per stage (GPU; your checkpoint and data).

    nemo-minitron prune   --factory nemotron_h_8b_to_4b model_path=/models/nemotron-h-8b-base \\
                          data_path=/data/train.jsonl output_dir=/results/nh4b --dryrun
    nemo-minitron distill --factory nemotron_h_8b_to_4b model_path=... data_path=... output_dir=...
    nemo-minitron eval    --factory nemotron_h_8b_to_4b ...
    nemo-minitron prune   --factory mamba2_1p3b_to_780m ...

Each factory is exactly the corresponding stage of ``nemo-minitron pipeline recipe=...`` (the
settings live once, in ``nemo_minitron.pipeline``); ``configs/<recipe>/<stage>.yaml`` is the same
configuration as YAML. ``model_path``/``data_path``/``output_dir`` are the factory's own
arguments (``--factory "nemotron_h_8b_to_4b(model_path=...)"``); after it, dotted overrides such
as ``train.max_steps=100`` or ``pruning_config.target_ffn_hidden_size=14336`` change single settings.
"""

import dataclasses
from pathlib import Path
from typing import Any, Dict

import nemo_run as run

from nemo_minitron.nemorun import recipe
from nemo_minitron.pipeline import MAMBA2_1P3B_TO_780M, NEMOTRON_H_8B_TO_4B, ScaleRecipe
from nemo_minitron.prune.config import PruningConfig
from nemo_minitron.stages.distill import distill
from nemo_minitron.stages.eval import evaluate
from nemo_minitron.stages.prune import prune
from nemo_minitron.train import OptimConfig, TrainConfig

#: Placeholders that make the generated configs readable; replace them on the command line.
MODEL_8B = "/models/nemotron-h-8b-base"
MODEL_MAMBA2 = "/models/mamba2-1.3b"
DATA = "/data/distillation/train.jsonl"


def _as_config(value: Any) -> Any:
    """Dataclass arguments become ``run.Config`` so that NeMo-Run can override and export them."""
    if isinstance(value, PruningConfig):
        return run.Config(PruningConfig, **{k: v for k, v in value.__dict__.items() if v is not None})
    if isinstance(value, (TrainConfig, OptimConfig)):  # the stage's defaults stay implicit
        changed = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                   if getattr(value, f.name) != f.default}
        return run.Config(type(value), **changed)
    return value


def stage_partial(scale: ScaleRecipe, stage: str, model_path: str, data_path: str, output_dir: str) -> run.Partial:
    """The ``stage`` step of a real-scale pipeline recipe as a NeMo-Run partial."""
    steps = {s.name: s for s in scale.steps(Path(output_dir), model_path=model_path, data_path=data_path)}
    step = steps[stage]
    kwargs: Dict[str, Any] = {k: _as_config(v) for k, v in step.kwargs.items() if v is not None}
    return run.Partial(step.fn, **kwargs)


@recipe(prune, "nemotron_h_8b_to_4b")
def nemotron_h_8b_to_4b_prune(model_path: str = MODEL_8B, data_path: str = DATA,
                              output_dir: str = "/results/nemotron-h-4b") -> run.Partial:
    """Prune Nemotron-H 8B to the paper's 4B shape (hidden 3072, FFN 12288, 112 Mamba heads, 52 layers)."""
    return stage_partial(NEMOTRON_H_8B_TO_4B, "prune", model_path, data_path, output_dir)


@recipe(distill, "nemotron_h_8b_to_4b")
def nemotron_h_8b_to_4b_distill(model_path: str = MODEL_8B, data_path: str = DATA,
                                output_dir: str = "/results/nemotron-h-4b") -> run.Partial:
    """Distill the pruned 4B from the 8B: sequence 8192, batch 768, cosine LR, 60 warm-up steps, FSDP, bf16."""
    return stage_partial(NEMOTRON_H_8B_TO_4B, "distill", model_path, data_path, output_dir)


@recipe(evaluate, "nemotron_h_8b_to_4b")
def nemotron_h_8b_to_4b_eval(model_path: str = MODEL_8B, data_path: str = DATA,
                             output_dir: str = "/results/nemotron-h-4b") -> run.Partial:
    """Evaluate the distilled 4B against the 8B (lm-eval tasks, RULER 4k-16k, speed at 65536/1024 tokens)."""
    return stage_partial(NEMOTRON_H_8B_TO_4B, "eval", model_path, data_path, output_dir)


@recipe(prune, "mamba2_1p3b_to_780m")
def mamba2_1p3b_to_780m_prune(model_path: str = MODEL_MAMBA2, data_path: str = DATA,
                              output_dir: str = "/results/mamba2-780m") -> run.Partial:
    """Prune Mamba2 1.3B to the 780M shape of section 4.5 (hidden 1536, 48 Mamba heads)."""
    return stage_partial(MAMBA2_1P3B_TO_780M, "prune", model_path, data_path, output_dir)


@recipe(distill, "mamba2_1p3b_to_780m")
def mamba2_1p3b_to_780m_distill(model_path: str = MODEL_MAMBA2, data_path: str = DATA,
                                output_dir: str = "/results/mamba2-780m") -> run.Partial:
    """Distill the pruned Mamba2 780M from the 1.3B (10.5B tokens: 10,000 steps x 256 x 4096)."""
    return stage_partial(MAMBA2_1P3B_TO_780M, "distill", model_path, data_path, output_dir)
