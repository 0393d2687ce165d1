"""Post-training on the tiny default, as ``scripts/posttrain_report.py`` runs it (docs/post_training.md).

    base teacher -> instruct teacher (plain SFT on the tasks, in phases)
    base student (pruned ~half + briefly distilled) -> SFT-KD 1 -> SFT-KD 2 -> RPO 1 -> RPO 2
        -> long-context SFT

:data:`SETTINGS` holds each stage's settings as flat dicts (``train`` / ``optim`` fields and the
stage's own arguments side by side, split by :func:`nemo_minitron.train.config.settings_kwargs`):
``full`` is what docs/post_training.md reports unless it says otherwise, ``quick`` a reduced
setting for a busy machine. :func:`posttrain_steps` turns one of them into the steps the script
runs through :func:`nemo_minitron.experiment.run_steps`.
"""

from pathlib import Path
from typing import Any, Dict, List, Optional

from nemo_minitron.experiment import Step
from nemo_minitron.prune.config import PruningConfig
from nemo_minitron.train.config import settings_kwargs

#: Each stage's settings as docs/post_training.md reports them (unless it says otherwise).
FULL: Dict[str, Any] = {
    # Two phases of 1500 steps (the second continues from the first with fresh data and warm-up):
    # the tasks' loss plateaus for ~1000 steps before the model starts to use the prompt.
    "teacher_sft": [dict(num_train=24000, max_steps=1500, micro_batch_size=16, global_batch_size=16, lr=2e-3,
                         warmup_steps=20, checkpoint_every=100, seed=0),
                    dict(num_train=24000, max_steps=1500, micro_batch_size=16, global_batch_size=16, lr=1.5e-3,
                         warmup_steps=20, checkpoint_every=100, seed=1)],
    "distill": dict(max_steps=60, seq_length=128, micro_batch_size=8, global_batch_size=8, lr=2e-3, warmup_steps=5),
    # 400 steps per round left the student at 0.06 mean accuracy (docs/post_training.md).
    "sft_kd": dict(num_train=19200, max_steps=1200, micro_batch_size=16, global_batch_size=16, lr=2e-3,
                   warmup_steps=20, topk=100, sft_weight=0.0, checkpoint_every=100),
    "rpo": dict(num_prompts=200, num_samples=4, temperature=0.7, max_new_tokens=12, max_steps=40,
                micro_batch_size=8, global_batch_size=8, lr=5e-5, beta=0.1, eta=1.0, sft_weight=0.1,
                gold_chosen=True),
    "long_context": dict(min_len=512, max_len=1024, num_train=80, max_steps=40, micro_batch_size=1,
                         global_batch_size=2, lr=5e-4, warmup_steps=4),
    "eval": dict(n_per_task=40, long_range=(24, 512, 1024)),
}
#: The reduced setting (``--quick``): one instruct-teacher phase, shorter stages, a smaller evaluation.
QUICK: Dict[str, Any] = {
    "teacher_sft": FULL["teacher_sft"][:1],
    "distill": {**FULL["distill"], "max_steps": 30, "warmup_steps": 3},
    "sft_kd": {**FULL["sft_kd"], "num_train": 3200, "max_steps": 200, "warmup_steps": 10},
    "rpo": {**FULL["rpo"], "num_prompts": 96, "max_steps": 20},
    "long_context": {**FULL["long_context"], "min_len": 384, "max_len": 768, "num_train": 40, "max_steps": 20,
                     "warmup_steps": 2},
    "eval": dict(n_per_task=24, long_range=(16, 384, 768)),
}
#: ``scripts/posttrain_report.py``'s settings by name.
SETTINGS: Dict[str, Dict[str, Any]] = {"full": FULL, "quick": QUICK}

#: The pruned student's widths (the shipped teacher's hidden 320, FFN 1280, 16 Mamba heads in 4 groups
#: -> 128, 512, 8: two heads per group).
PRUNE = dict(target_hidden_size=128, target_ffn_hidden_size=512, target_mamba_num_heads=8)
#: How the student is pruned: calibration and layer-importance budgets.
PRUNE_SETTINGS = dict(num_samples=32, seq_length=128, layer_importance_samples=16, device="cpu")
#: Distillation of the pruned student on LM text: no validation (task accuracy is measured afterwards).
DISTILL_SETTINGS = dict(val_check_interval=10**6, limit_val_batches=0)


def posttrain_steps(out: Path, teacher: Path, setting: str = "full", student: Optional[Path] = None) -> List[Step]:
    """The stages of ``setting`` into ``out``: the instruct teacher's phases, then (unless a distilled
    ``student`` is given) prune and distill, then SFT-KD 1, 2, RPO 1, 2 and long-context SFT.

    Step names: ``instruct_teacher_phase<i>``, ``prune``, ``distill``, ``sft_kd1``, ``sft_kd2``,
    ``rpo1``, ``rpo2``, ``long_context``; the last phase writes ``out/instruct_teacher``.
    """
    from nemo_minitron.stages.distill import distill
    from nemo_minitron.stages.instruct_sft import instruct_sft
    from nemo_minitron.stages.long_context import long_context
    from nemo_minitron.stages.prune import prune
    from nemo_minitron.stages.rpo import rpo
    from nemo_minitron.stages.sft_kd import sft_kd

    cfg = SETTINGS[setting]

    def step(name: str, stage: Any, output: Path, settings: Dict[str, Any], **paths: Any) -> Step:
        kwargs = settings_kwargs(stage, **{"progress": False, **settings})
        return Step(name, stage, {**{k: str(v) for k, v in paths.items()}, **kwargs}, output)

    steps: List[Step] = []
    source, phases = teacher, cfg["teacher_sft"]
    for i, phase in enumerate(phases, start=1):
        target = out / "instruct_teacher" if i == len(phases) else out / f"instruct_teacher_phase{i}"
        steps.append(step(f"instruct_teacher_phase{i}", instruct_sft, target, phase,
                          base_teacher_path=source, save_path=target))
        source = target
    instruct = source
    if student is None:
        pruned, student = out / "pruned", out / "student_base"
        steps.append(Step("prune", prune, dict(model_path=str(teacher), save_path=str(pruned),
                                               pruning_config=PruningConfig(**PRUNE), **PRUNE_SETTINGS), pruned))
        steps.append(step("distill", distill, student, {**DISTILL_SETTINGS, **cfg["distill"]},
                          teacher_path=teacher, student_path=pruned, save_path=student))
    sk1, sk2, r1, r2, lc = (out / n for n in ("sft_kd1", "sft_kd2", "rpo1", "rpo2", "long_context"))
    steps += [
        step("sft_kd1", sft_kd, sk1, {"round": 1, **cfg["sft_kd"]}, teacher_path=instruct, student_path=student,
             save_path=sk1),
        step("sft_kd2", sft_kd, sk2, {"round": 2, **cfg["sft_kd"]}, teacher_path=instruct, student_path=sk1,
             save_path=sk2),
        step("rpo1", rpo, r1, {"round": 1, **cfg["rpo"]}, model_path=sk2, save_path=r1),
        step("rpo2", rpo, r2, {"round": 2, **cfg["rpo"]}, model_path=r1, save_path=r2),
        step("long_context", long_context, lc, cfg["long_context"], model_path=r2, save_path=lc),
    ]
    return steps
