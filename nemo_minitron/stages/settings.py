"""Every training stage's own defaults, in one table: ``<Stage>Train`` / ``<Stage>Optim`` are
:class:`~nemo_minitron.train.TrainConfig` / :class:`~nemo_minitron.train.OptimConfig` subclasses
whose fields default to the stage's values, so that ``optim.warmup_steps=3`` on the command line
keeps, say, distill's ``optim.lr=1e-3`` (NeMo-Run builds a dotted override from the annotated
class). YAML names them by this module's path (``nemo_minitron.stages.settings.DistillOptim``).
"""

from nemo_minitron.train.config import stage_configs

#: Defaults every post-training stage shares: no validation during training (``eval`` measures
#: task accuracy afterwards) and gradient-norm clipping at 1.0.
POST_TRAINING = {"limit_val_batches": 0, "gradient_clip_val": 1.0}

PretrainTrain, PretrainOptim = stage_configs(
    __name__, "Pretrain",
    train=dict(seq_length=256, micro_batch_size=4, global_batch_size=4, max_steps=600, val_check_interval=100,
               limit_val_batches=4, checkpoint_every=100, gradient_clip_val=1.0),
    optim=dict(lr=3e-3, warmup_steps=30, weight_decay=0.1))
DistillTrain, DistillOptim = stage_configs(__name__, "Distill", train={}, optim={})
InstructSFTTrain, InstructSFTOptim = stage_configs(
    __name__, "InstructSFT",
    train=dict(POST_TRAINING, seq_length=256, micro_batch_size=16, global_batch_size=16, max_steps=300,
               checkpoint_every=100),
    optim=dict(lr=1e-3, warmup_steps=20, weight_decay=0.01))
SFTKDTrain, SFTKDOptim = stage_configs(
    __name__, "SFTKD",
    train=dict(POST_TRAINING, seq_length=256, micro_batch_size=8, global_batch_size=8, max_steps=100,
               checkpoint_every=50),
    optim=dict(lr=5e-4, warmup_steps=10, weight_decay=0.01))
RPOTrain, RPOOptim = stage_configs(
    __name__, "RPO",
    train=dict(POST_TRAINING, seq_length=256, micro_batch_size=8, global_batch_size=8, max_steps=50,
               checkpoint_every=50),
    optim=dict(lr=1e-5, warmup_steps=5, weight_decay=0.0))
LongContextTrain, LongContextOptim = stage_configs(
    __name__, "LongContext",
    train=dict(POST_TRAINING, micro_batch_size=1, global_batch_size=2, max_steps=20, checkpoint_every=20),
    optim=dict(lr=1e-4, warmup_steps=2, weight_decay=0.01))
