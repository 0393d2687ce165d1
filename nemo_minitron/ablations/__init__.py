"""Reproduce the paper's pruning ablations (width vs depth, Mamba heads vs channels, scoring
metrics, L2 vs FLAP, KL vs cosine, pruned vs random init, speed) on a teacher checkpoint."""

from .runner import DEFAULT, QUICK, AblationSettings, run_ablations
from .variants import Variant, block_params, build_variants

__all__ = ["AblationSettings", "DEFAULT", "QUICK", "Variant", "block_params", "build_variants", "run_ablations"]
