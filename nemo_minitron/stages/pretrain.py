# STAND-IN: replaced by the train branch
"""The ``pretrain`` stage, re-exported under the stage's name until its own module lands."""

from nemo_minitron.pretrain import pretrain_teacher as pretrain

__all__ = ["pretrain"]
