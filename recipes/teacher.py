"""The shipped teacher: a 15.0M-parameter NemotronH trained on the teacher corpus (docs/teacher.md).

    nemo-minitron pretrain --factory teacher save_path=runs/teacher/final
    python scripts/train_teacher.py --run-dir runs/teacher      # the same, with snapshots and a log

The run is long (about 20M tokens: hours on one CPU core) and resumable; its schedule is
warmup-stable-decay, so ``train.max_steps`` can be raised until the decay begins (the last
``optim.decay_steps`` steps) and the run continues as if it had been planned that long.
"""

import nemo_run as run

from nemo_minitron.nemorun import recipe
from nemo_minitron.stages.pretrain import pretrain
from nemo_minitron.stages.settings import PretrainOptim, PretrainTrain

#: 16 rows of 512 tokens = 8192 tokens per step, as 2 micro-batches of 8 (a micro-batch of 16 held 6 GB);
#: 2400 steps = 19.7M tokens, about 3 passes over the 6.55M training tokens (the shipped teacher was then
#: continued by a second decay to step 3200: ``scripts/train_teacher.py --rewarm-lr``, docs/teacher.md).
#: Mamba scan chunk 64: 1.35x the tokens/s of the config's 128 on CPU (scripts/bench_teacher_shapes.py).
TEACHER_TRAIN = PretrainTrain(seq_length=512, micro_batch_size=8, global_batch_size=16, max_steps=2400,
                              val_check_interval=100, limit_val_batches=8, checkpoint_every=20,
                              gradient_clip_val=1.0, ssm_chunk_size=64, keep_work=True)
#: The MLP width a run from scratch trains at: the shipped teacher's first cycles (to step 4800) ran at it;
#: ``scripts/train_teacher.py --widen-ffn`` grows a snapshot from there (docs/teacher.md).
TEACHER_START_FFN = 1280
#: Peak LR 2e-3 after 100 warmup steps, stable, then linear decay to 2e-4 over the last 20 % (480 steps).
TEACHER_OPTIM = PretrainOptim(lr=2e-3, warmup_steps=100, weight_decay=0.1, schedule="wsd", decay_steps=480,
                              min_lr_ratio=0.1)


@recipe(pretrain, "teacher")
def teacher_pretrain(save_path: str = "runs/teacher/final") -> run.Partial:
    """Pretrain the shipped teacher (hours on CPU; resumable; WSD schedule)."""
    return run.Partial(pretrain, save_path=save_path, arch_name="teacher", corpus="teacher",
                       train=run.Config(PretrainTrain, **_fields(TEACHER_TRAIN)),
                       optim=run.Config(PretrainOptim, **_fields(TEACHER_OPTIM)))


def _fields(config: object) -> dict:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}  # type: ignore[arg-type]
