"""The built-in tiny default: every stage on the tiny NemotronH teacher, on a CPU, in minutes.

Recipes here are NeMo-Run factories (``run.Partial`` of a stage's function):

    nemo-minitron pretrain --factory tiny save_path=outputs/demo/teacher
    nemo-minitron pretrain --factory "tiny(save_path=outputs/t)" train.max_steps=100 --dryrun

or in Python::

    import nemo_run as run
    from recipes.tiny import tiny_pretrain
    run.run(tiny_pretrain(save_path="outputs/t"))           # here, in this process
    run.run(tiny_pretrain(), executor=run.LocalExecutor())   # or on any NeMo-Run executor

``configs/tiny.yaml`` is the same configuration as YAML (``--yaml configs/tiny.yaml``);
``tests/test_cli.py`` checks that the two resolve to the same thing.

The tiny pipeline (``nemo-minitron pipeline recipe=tiny``, what ``make demo`` runs) is
:func:`tiny_steps`: every stage's settings, from pruning targets to evaluation budgets;
``--factory tiny`` of the pipeline stage (``configs/pipeline_tiny.yaml``) runs it into
``outputs/demo``.
"""

import dataclasses
import inspect
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import nemo_run as run

from nemo_minitron.arch import HybridArch
from nemo_minitron.experiment import Step
from nemo_minitron.nemorun import recipe
from nemo_minitron.prune.config import PruningConfig
from nemo_minitron.stages.pipeline import pipeline
from nemo_minitron.stages.pretrain import pretrain

#: Where the demo writes (``make demo``: ``scripts/demo.sh``'s DEMO_DIR default).
DEMO_DIR = "outputs/demo"
#: Where the demo keeps its teacher (``make demo``); a finished checkpoint there is reused.
DEMO_TEACHER_DIR = f"{DEMO_DIR}/teacher"

#: Arguments that are per-run switches or Python-only, never part of the recipe.
_NOT_RECIPE = ("save_path", "force", "arch", "overwrite", "snapshot_path", "snapshot_every", "init_from", "first_step")
#: Config fields that are per-run switches (where to work, what to keep, when to stop, bars).
_NOT_RECIPE_FIELDS = ("work_dir", "keep_work", "stop_after_steps", "progress", "ssm_chunk_size")


def _spelled_out(value: Any) -> Any:
    """A config object as a ``run.Config`` of all its (recipe) fields, so YAML shows every number."""
    if not dataclasses.is_dataclass(value):
        return value
    fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name not in _NOT_RECIPE_FIELDS}
    return run.Config(type(value), **fields)


def tiny_pretrain_settings() -> Dict[str, Any]:
    """The tiny teacher's training settings, spelled out.

    ``pretrain``'s defaults *are* the tiny configuration (its ``arch_name="tiny"`` preset and its
    ``PretrainTrain`` / ``PretrainOptim`` defaults, sized to train in about ten minutes on 2 CPU
    cores), so the recipe takes them from its signature rather than copying numbers that could
    drift from the library.
    """
    return {
        name: _spelled_out(param.default)
        for name, param in inspect.signature(pretrain).parameters.items()
        if name not in _NOT_RECIPE and param.default is not inspect.Parameter.empty
    }


@recipe(pretrain, "tiny")
def tiny_pretrain(save_path: str = DEMO_TEACHER_DIR) -> run.Partial:
    """Pretrain the built-in tiny NemotronH teacher on CPU (cached in ``save_path``)."""
    return run.Partial(pretrain, save_path=save_path, **tiny_pretrain_settings())


def scaled(scale: float) -> Tuple[Callable[[int], int], Callable[..., int]]:
    """``steps(n)``: a stage's step count times ``scale``; ``warmup(n)``: the warm-up of such a run
    (a warm-up longer than the run is an error, so it scales with it)."""

    def steps(n: int) -> int:
        return max(2, int(round(n * scale)))

    def warmup(n: int, fraction: float = 0.1) -> int:
        return max(1, int(steps(n) * fraction))

    return steps, warmup


#: The demo's width pruning, as fractions of the teacher's (the shipped teacher: hidden 320 -> 256,
#: FFN 1280 -> 768, Mamba heads 16 -> 12, i.e. 64 % of its parameters; the Minitron recipe prunes
#: width, not depth). Fractions, so a teacher of another shape (``teacher_dir=``) gets the same cut.
DEMO_WIDTH_FRACTIONS = {"hidden": 0.8, "ffn": 0.6, "mamba_heads": 0.75}
#: The benchmarks the demo scores teacher, pruned and distilled student on (documents per task; LAMBADA
#: is left out: its exact-word accuracy is 0 for every model this small).
DEMO_BENCHMARKS = ("hellaswag", "piqa", "arc_easy")
DEMO_BENCHMARK_LIMIT = 100


def teacher_checkpoint(teacher_dir: Optional[str]) -> Path:
    """The teacher the pipeline starts from: ``teacher_dir`` (a finished checkpoint) or the shipped one."""
    from nemo_minitron.data.shipped_teacher import shipped_teacher
    from nemo_minitron.models import is_complete_checkpoint

    if teacher_dir is None:
        return shipped_teacher()
    if not is_complete_checkpoint(teacher_dir):
        raise FileNotFoundError(f"teacher_dir={teacher_dir!r} holds no finished checkpoint (config.json and "
                                "*.safetensors); train one with `nemo-minitron pretrain`, or leave teacher_dir unset "
                                "to use the shipped teacher")
    return Path(teacher_dir)


def checkpoint_arch(path: Path) -> HybridArch:
    """The shape of the checkpoint in ``path`` (its config only; no weights are read)."""
    import transformers

    from nemo_minitron.arch import HybridArch

    return HybridArch.from_hf_config(transformers.AutoConfig.from_pretrained(path))


def demo_pruning(arch: HybridArch) -> PruningConfig:
    """:data:`DEMO_WIDTH_FRACTIONS` of ``arch``'s widths (hidden and FFN to multiples of 16; Mamba
    heads to a multiple of its groups, so that group-aware pruning keeps every group)."""
    f = DEMO_WIDTH_FRACTIONS

    def multiple(value: float, of: int) -> int:
        return max(of, int(round(value / of)) * of)

    return PruningConfig(target_hidden_size=multiple(arch.hidden_size * f["hidden"], 16),
                         target_ffn_hidden_size=multiple(arch.ffn_hidden_size * f["ffn"], 16),
                         target_mamba_num_heads=multiple(arch.mamba_num_heads * f["mamba_heads"],
                                                         arch.mamba_num_groups))


def tiny_steps(output_dir: Path, teacher_dir: Optional[str] = None, scale: float = 1.0,
               use_search: bool = False, **_: Any) -> List[Step]:
    """The built-in pipeline's steps (about 20 minutes on 2 CPU cores at ``scale=1``).

    It starts from the shipped teacher (``nemo_minitron/data/teacher``, docs/teacher.md) or from
    ``teacher_dir``: prune (or search) -> distill -> evaluate teacher vs pruned vs distilled ->
    instruct teacher -> SFT-KD x2 -> RPO x2 -> long-context SFT -> evaluate the final model against
    the instruct teacher. ``scale`` multiplies every step count (a value below 0.1 is test-sized:
    tiny calibration, short sequences, a token evaluation); ``use_search`` replaces the fixed pruning
    targets by an architecture search under the same parameter budget.
    """
    from nemo_minitron.evaluate import CORPUS_PPL
    from nemo_minitron.prune.search import SearchSpace
    from nemo_minitron.stages.distill import DistillOptim, DistillTrain, distill
    from nemo_minitron.stages.eval import evaluate
    from nemo_minitron.stages.instruct_sft import InstructSFTOptim, InstructSFTTrain, instruct_sft
    from nemo_minitron.stages.prune import prune
    from nemo_minitron.stages.search import search

    steps, warmup = scaled(scale)
    quick = scale < 0.1  # test-sized: tiny calibration, short sequences, a token evaluation
    seq = 64 if quick else 256
    d = output_dir
    teacher = teacher_checkpoint(teacher_dir)
    teacher_arch = checkpoint_arch(teacher)
    pruning = demo_pruning(teacher_arch)
    pruned, distilled, instruct = d / "01_pruned", d / "02_distilled", d / "04_instruct_teacher"
    post = {"progress": True, "seq_length": seq}
    out: List[Step] = []
    if use_search:
        search_dir = d / "01_search"
        budget = pruning.target_widths(teacher_arch).num_params()  # the fixed targets' size
        out.append(Step("search", search, dict(
            model_path=str(teacher), output_dir=str(search_dir), target_params=budget, tolerance=0.05, top_k=3,
            distill_steps=steps(20), seq_length=seq, space=SearchSpace(fractions=[1.0, 0.75, 0.625, 0.5])),
            search_dir / "search_summary.json"))
        # The selected candidate's distilled checkpoint is the student from here on.
        pruned = search_dir / "selected"
    else:
        out.append(Step("prune", prune, dict(
            model_path=str(teacher), save_path=str(pruned), num_samples=4 if quick else 32, seq_length=seq,
            layer_importance_samples=4 if quick else 32, pruning_config=pruning), pruned))
    eval_distilled = d / "03_eval_distilled"
    out += [
        Step("distill", distill, dict(
            teacher_path=str(teacher), student_path=str(pruned), save_path=str(distilled),
            train=DistillTrain(max_steps=steps(100), seq_length=seq, micro_batch_size=8, global_batch_size=8,
                               val_check_interval=steps(50), limit_val_batches=2 if quick else 8, progress=True),
            optim=DistillOptim(lr=2e-3, warmup_steps=warmup(100))), distilled),
        # What compression did: the teacher, the pruned student before distillation and after.
        Step("eval_distilled", evaluate, dict(
            model_path=str(distilled), baseline_path=str(teacher), output_dir=str(eval_distilled),
            compare_paths={} if use_search else {"pruned": str(pruned)},
            tasks=[CORPUS_PPL, *(DEMO_BENCHMARKS[-1:] if quick else DEMO_BENCHMARKS)],
            limit=3 if quick else DEMO_BENCHMARK_LIMIT, ruler_lengths=[],
            speed_input_len=64 if quick else 512, speed_output_len=8 if quick else 32),
            eval_distilled / "eval_report.json"),
        Step("instruct_teacher", instruct_sft, dict(
            base_teacher_path=str(teacher), save_path=str(instruct),
            train=InstructSFTTrain(max_steps=steps(120), **post), optim=InstructSFTOptim(warmup_steps=warmup(120)),
            **({"num_train": 64} if quick else {})), instruct),
    ]
    # A small student still misses whole prompts; the checker's answer then serves as chosen.
    # Budgets sized for the 20-minute demo on 2 cores (docs/teacher.md has the stage times).
    return out + post_training_steps(d, 5, instruct, distilled, instruct, scale, gold_chosen=True, sft_kd_steps=60,
                                     rpo_steps=25)


def post_training_steps(d: Path, first: int, kd_teacher: Path, student: Path, baseline: Path, scale: float,
                        gold_chosen: bool, sft_kd_steps: int = 100, rpo_steps: int = 50) -> List[Step]:
    """SFT-KD x2 from ``kd_teacher``, RPO x2, long-context SFT and an evaluation against ``baseline``,
    starting from ``student``, in folders of ``d`` numbered from ``first`` (the tiny settings; the
    SmolLM2 recipe shares them). ``gold_chosen``: the checker's answer is RPO's chosen response
    where every sample is wrong (a small student still misses whole prompts)."""
    from nemo_minitron.evaluate import CORPUS_PPL
    from nemo_minitron.stages.eval import evaluate
    from nemo_minitron.stages.long_context import LongContextOptim, LongContextTrain, long_context
    from nemo_minitron.stages.rpo import RPOOptim, RPOTrain, rpo
    from nemo_minitron.stages.sft_kd import SFTKDOptim, SFTKDTrain, sft_kd

    steps, warmup = scaled(scale)
    quick = scale < 0.1
    post = {"progress": True, "seq_length": 64 if quick else 256}
    names = ("sft_kd_1", "sft_kd_2", "rpo_1", "rpo_2", "long_context", "eval")
    sft1, sft2, rpo1, rpo2, longctx, ev = (d / f"{first + i:02d}_{name}" for i, name in enumerate(names))
    rpo_kw = {"gold_chosen": gold_chosen}
    # One pass over the conversations: the teacher's top-100 logits are computed for each one
    # before training, so conversations the steps never reach would only cost time.
    sft_train = 32 if quick else steps(sft_kd_steps) * SFTKDTrain().global_batch_size
    return [
        Step("sft_kd_1", sft_kd, dict(teacher_path=str(kd_teacher), student_path=str(student), save_path=str(sft1),
                                      round=1, train=SFTKDTrain(max_steps=steps(sft_kd_steps), **post),
                                      optim=SFTKDOptim(warmup_steps=warmup(sft_kd_steps)), num_train=sft_train), sft1),
        Step("sft_kd_2", sft_kd, dict(teacher_path=str(kd_teacher), student_path=str(sft1), save_path=str(sft2),
                                      round=2, train=SFTKDTrain(max_steps=steps(sft_kd_steps), **post),
                                      optim=SFTKDOptim(warmup_steps=warmup(sft_kd_steps)), num_train=sft_train), sft2),
        Step("rpo_1", rpo, dict(model_path=str(sft2), save_path=str(rpo1), round=1, **rpo_kw,
                                train=RPOTrain(max_steps=steps(rpo_steps), **post),
                                optim=RPOOptim(warmup_steps=warmup(rpo_steps)),
                                **({"num_prompts": 16} if quick else {})), rpo1),
        Step("rpo_2", rpo, dict(model_path=str(rpo1), save_path=str(rpo2), round=2, **rpo_kw,
                                train=RPOTrain(max_steps=steps(rpo_steps), **post),
                                optim=RPOOptim(warmup_steps=warmup(rpo_steps)),
                                **({"num_prompts": 16} if quick else {})), rpo2),
        Step("long_context", long_context, dict(
            model_path=str(rpo2), save_path=str(longctx), min_len=256 if quick else 1024,
            max_len=512 if quick else 2048, train=LongContextTrain(max_steps=steps(20), progress=True),
            optim=LongContextOptim(warmup_steps=warmup(20)), **({"num_train": 4} if quick else {})), longctx),
        Step("eval", evaluate, dict(
            model_path=str(longctx), baseline_path=str(baseline), output_dir=str(ev),
            # Held-out bits/byte (still a language model?), then what post-training taught: the checkable
            # instruction tasks and long-context retrieval, against the instruct teacher.
            tasks=[CORPUS_PPL],
            ruler_lengths=[512] if quick else [512, 1024], ruler_samples=1 if quick else 3,
            speed_input_len=64 if quick else 512, speed_output_len=8 if quick else 32,
            instruct_tasks=2 if quick else 40,
            limit=5 if quick else None), ev / "eval_report.json"),
    ]


@recipe(pipeline, "tiny")
def tiny_pipeline(output_dir: str = DEMO_DIR) -> run.Partial:
    """The tiny base-to-instruct pipeline on this machine's CPU (:func:`tiny_steps`), what ``make demo`` runs."""
    return run.Partial(pipeline, recipe="tiny", output_dir=output_dir, scale=1.0, use_search=False,
                       launcher="direct")
