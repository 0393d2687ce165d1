"""Reproduce the paper's pruning ablations on a teacher checkpoint: for a hybrid Mamba teacher
width vs depth, Mamba heads vs channels, scoring metrics, L2 vs FLAP, KL vs cosine, pruned vs
random init, speed; for a plain decoder (SmolLM2) width vs depth, KL vs cosine, each width axis
alone and random init, on held-out text and lm-eval benchmarks.

Library only: the compared shapes (:mod:`.variants`), the runs (:mod:`.runner`, which distills
with the function it is given) and the verdicts and report (:mod:`.report`, and
:mod:`.decoder_report` for a decoder). The ``ablations`` stage wires them; the budgets live in
``recipes/ablations.py``.
"""

from .runner import AblationSettings, run_ablations
from .variants import Variant, block_params, build_variants

__all__ = ["AblationSettings", "Variant", "block_params", "build_variants", "run_ablations"]
