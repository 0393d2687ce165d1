"""The paper's real-scale recipes (GPU; your checkpoint and data): the settings, the pipelines' steps,
one factory per stage, and the Slurm pipelines.

    nemo-minitron prune   --factory nemotron_h_8b_to_4b model_path=/models/nemotron-h-8b-base \\
                          data_path=/data/train.jsonl output_dir=/results/nh4b --dryrun
    nemo-minitron distill --factory nemotron_h_8b_to_4b model_path=... data_path=... output_dir=...
    nemo-minitron eval    --factory nemotron_h_8b_to_4b ...
    nemo-minitron prune   --factory mamba2_1p3b_to_780m ...
    nemo-minitron pipeline recipe=nemotron_h_8b_to_4b model_path=... data_path=... launcher=slurm ...
    nemo-minitron pipeline --factory nemotron_h_8b_to_4b slurm.account=ACCOUNT --dryrun

:class:`ScaleRecipe` holds one recipe's settings and builds its prune -> distill -> eval steps;
each stage factory is exactly the corresponding step (``configs/<recipe>/<stage>.yaml`` is the
same configuration as YAML). ``model_path``/``data_path``/``output_dir`` are the factory's own
arguments (``--factory "nemotron_h_8b_to_4b(model_path=...)"``); after it, dotted overrides such
as ``train.max_steps=100`` or ``pruning_config.target_ffn_hidden_size=14336`` change single settings.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

import nemo_run as run

from nemo_minitron.executors import SlurmOptions
from nemo_minitron.experiment import Step
from nemo_minitron.nemorun import recipe
from nemo_minitron.prune.config import PruningConfig
from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill
from nemo_minitron.stages.eval import evaluate
from nemo_minitron.stages.pipeline import pipeline
from nemo_minitron.stages.prune import prune
from nemo_minitron.train import OptimConfig, TrainConfig


@dataclass
class ScaleRecipe:
    """A real-scale prune -> distill -> eval recipe on the user's checkpoint and data (GPU, bf16, FSDP).

    Post-training (SFT-KD / RPO / long context) needs the user's chat and preference data and is
    run with the ``sft_kd`` / ``rpo`` / ``long_context`` stages on the distilled model.
    """

    pruning: PruningConfig
    seq_length: int
    global_batch_size: int
    micro_batch_size: int
    max_steps: int
    warmup_steps: int
    lr: float
    devices: int = 8

    def steps(self, output_dir: Path, model_path: Optional[str], data_path: Optional[str],
              val_data_path: Optional[str] = None, **_: Any) -> List[Step]:
        """The pipeline's steps into ``output_dir`` (``01_pruned``, ``02_distilled``, ``03_eval``)."""
        if not model_path or not data_path:
            raise ValueError("real-scale recipes need model_path=<HF checkpoint folder> and data_path=<text/jsonl/"
                             "parquet files> (the distillation corpus)")
        pruned, distilled = output_dir / "01_pruned", output_dir / "02_distilled"
        gpu = dict(accelerator="gpu", devices=self.devices, precision="bf16-mixed")
        return [
            Step("prune", prune, dict(
                model_path=model_path, save_path=str(pruned), pruning_config=self.pruning, calib_data_path=data_path,
                num_samples=1024, seq_length=4096, batch_size=4, dtype="bfloat16", device="cuda"), pruned),
            Step("distill", distill, dict(
                teacher_path=model_path, student_path=str(pruned), save_path=str(distilled), data_path=data_path,
                val_data_path=val_data_path,
                train=DistillTrain(seq_length=self.seq_length, micro_batch_size=self.micro_batch_size,
                                   global_batch_size=self.global_batch_size, max_steps=self.max_steps,
                                   strategy="fsdp", **gpu),
                optim=DistillOptim(lr=self.lr, warmup_steps=self.warmup_steps)), distilled),
            Step("eval", evaluate, dict(
                model_path=str(distilled), baseline_path=model_path, output_dir=str(output_dir / "03_eval"),
                ruler_lengths=[4096, 8192, 16384], speed_input_len=65536, speed_output_len=1024),
                output_dir / "03_eval" / "eval_report.json"),
        ]


#: The paper's final candidate (Table 1): width-only, 52 layers; KD with sequence 8192, batch 768,
#: cosine LR with 60 warm-up steps (section 4.2). max_steps = 380B tokens / (768 x 8192).
NEMOTRON_H_8B_TO_4B = ScaleRecipe(
    pruning=PruningConfig(target_hidden_size=3072, target_ffn_hidden_size=12288, target_mamba_num_heads=112),
    seq_length=8192, global_batch_size=768, micro_batch_size=1, max_steps=60_400, warmup_steps=60, lr=1e-4)
#: Section 4.5: SSM and embedding pruning of Mamba2 1.3B to the 780M shape, 10.5B tokens.
MAMBA2_1P3B_TO_780M = ScaleRecipe(
    pruning=PruningConfig(target_hidden_size=1536, target_mamba_num_heads=48),
    seq_length=4096, global_batch_size=256, micro_batch_size=4, max_steps=10_000, warmup_steps=60, lr=1e-4)

#: Nemotron 3 Nano 30B-A3B (31.58B total, 3.58B active) -> 22.28B total, 3.00B active: the best subnet of Model
#: Optimizer's active-parameter search in its Nemotron-3-Nano tutorial (examples/megatron_bridge/tutorials/
#: NVIDIA-Nemotron-3-Nano-30B-A3B-BF16): hidden 2688 -> 2304, 128 -> 104 routed experts, shared expert 3712 -> 3072;
#: all 52 layers, Mamba heads and expert widths kept (the ``nemotron-3-nano-22b-a3b`` preset). Prune only: the
#: distillation of a 30B MoE teacher is not a recipe here yet.
NEMOTRON_3_NANO_TO_22B_A3B = PruningConfig(target_hidden_size=2304, target_num_moe_experts=104,
                                           target_moe_shared_expert_intermediate_size=3072)

#: Placeholders that make the generated configs readable; replace them on the command line.
MODEL_8B = "/models/nemotron-h-8b-base"
MODEL_MAMBA2 = "/models/mamba2-1.3b"
MODEL_NANO = "/models/NVIDIA-Nemotron-3-Nano-30B-A3B-BF16"
DATA = "/data/distillation/train.jsonl"
OUT_8B = "/results/nemotron-h-4b"
OUT_MAMBA2 = "/results/mamba2-780m"
OUT_NANO = "/results/nemotron-3-nano-22b-a3b"


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
                              output_dir: str = OUT_8B) -> run.Partial:
    """Prune Nemotron-H 8B to the paper's 4B shape (hidden 3072, FFN 12288, 112 Mamba heads, 52 layers)."""
    return stage_partial(NEMOTRON_H_8B_TO_4B, "prune", model_path, data_path, output_dir)


@recipe(distill, "nemotron_h_8b_to_4b")
def nemotron_h_8b_to_4b_distill(model_path: str = MODEL_8B, data_path: str = DATA,
                                output_dir: str = OUT_8B) -> run.Partial:
    """Distill the pruned 4B from the 8B: sequence 8192, batch 768, cosine LR, 60 warm-up steps, FSDP, bf16."""
    return stage_partial(NEMOTRON_H_8B_TO_4B, "distill", model_path, data_path, output_dir)


@recipe(evaluate, "nemotron_h_8b_to_4b")
def nemotron_h_8b_to_4b_eval(model_path: str = MODEL_8B, data_path: str = DATA,
                             output_dir: str = OUT_8B) -> run.Partial:
    """Evaluate the distilled 4B against the 8B (lm-eval tasks, RULER 4k-16k, speed at 65536/1024 tokens)."""
    return stage_partial(NEMOTRON_H_8B_TO_4B, "eval", model_path, data_path, output_dir)


@recipe(prune, "mamba2_1p3b_to_780m")
def mamba2_1p3b_to_780m_prune(model_path: str = MODEL_MAMBA2, data_path: str = DATA,
                              output_dir: str = OUT_MAMBA2) -> run.Partial:
    """Prune Mamba2 1.3B to the 780M shape of section 4.5 (hidden 1536, 48 Mamba heads)."""
    return stage_partial(MAMBA2_1P3B_TO_780M, "prune", model_path, data_path, output_dir)


@recipe(distill, "mamba2_1p3b_to_780m")
def mamba2_1p3b_to_780m_distill(model_path: str = MODEL_MAMBA2, data_path: str = DATA,
                                output_dir: str = OUT_MAMBA2) -> run.Partial:
    """Distill the pruned Mamba2 780M from the 1.3B (10.5B tokens: 10,000 steps x 256 x 4096)."""
    return stage_partial(MAMBA2_1P3B_TO_780M, "distill", model_path, data_path, output_dir)


@recipe(prune, "nemotron_3_nano_30b_to_22b_a3b")
def nemotron_3_nano_30b_to_22b_a3b_prune(model_path: str = MODEL_NANO, data_path: str = DATA,
                                         output_dir: str = OUT_NANO) -> run.Partial:
    """Prune Nemotron 3 Nano 30B-A3B to Model Optimizer's 22B-A3.0B shape (hidden 2304, 104 experts, shared 3072):
    1024 x 8192-token calibration sequences (more tokens per expert than the dense recipes), bf16, one GPU; MTP
    layers are dropped (transformers does not load them)."""
    return run.Partial(prune, model_path=model_path, save_path=str(Path(output_dir) / "01_pruned"),
                       pruning_config=_as_config(NEMOTRON_3_NANO_TO_22B_A3B), calib_data_path=data_path,
                       num_samples=1024, seq_length=8192, batch_size=2, dtype="bfloat16", device="cuda")


def slurm_pipeline(recipe_name: str, model_path: str, data_path: str, output_dir: str) -> run.Partial:
    """``recipe_name``'s prune -> distill -> eval as dependent Slurm jobs, one node of 8 GPUs
    (``slurm.account`` is a placeholder: set yours)."""
    slurm = run.Config(SlurmOptions, account="my-account", partition="batch", nodes=1, gpus_per_node=8,
                       time="04:00:00", container_image="nvcr.io/nvidia/pytorch:25.01-py3",
                       container_mounts=["/models:/models", "/data:/data", "/results:/results"],
                       job_dir="/results/nemo-minitron-jobs")
    return run.Partial(pipeline, recipe=recipe_name, model_path=model_path, data_path=data_path,
                       output_dir=output_dir, launcher="slurm", slurm=slurm)


@recipe(pipeline, "nemotron_h_8b_to_4b")
def nemotron_h_8b_to_4b_pipeline(model_path: str = MODEL_8B, data_path: str = DATA,
                                 output_dir: str = OUT_8B) -> run.Partial:
    """Nemotron-H 8B -> 4B, prune -> distill -> eval as one NeMo-Run experiment on Slurm."""
    return slurm_pipeline("nemotron_h_8b_to_4b", model_path, data_path, output_dir)


@recipe(pipeline, "mamba2_1p3b_to_780m")
def mamba2_1p3b_to_780m_pipeline(model_path: str = MODEL_MAMBA2, data_path: str = DATA,
                                 output_dir: str = OUT_MAMBA2) -> run.Partial:
    """Mamba2 1.3B -> 780M, prune -> distill -> eval as one NeMo-Run experiment on Slurm."""
    return slurm_pipeline("mamba2_1.3b_to_780m", model_path, data_path, output_dir)
