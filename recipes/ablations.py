"""The budgets of the paper's ablations (``nemo-minitron ablations``, ``scripts/ablations.py``).

``DEFAULT`` is what docs/results.md reports (well under an hour on 2 cores); ``QUICK``
(``quick=true`` / ``--quick``) is what the test suite runs: every code path in a couple of
minutes, numbers meaningless. Command-line ``num_seeds`` / ``steps`` / ``match_factor`` /
``workers`` override single values.
"""

from dataclasses import replace

from nemo_minitron.ablations import AblationSettings

DEFAULT = AblationSettings(
    steps=40, seq_length=128, micro_batch_size=8, global_batch_size=8, lr=2e-3, warmup_steps=4, num_seeds=3,
    calibration_samples=32, calibration_seq_length=128, layer_importance_samples=16, match_factor=8, val_rows=0,
    speed_input_len=256, speed_output_len=32, speed_repeats=3, workers=2)
QUICK = replace(
    DEFAULT, steps=3, seq_length=64, micro_batch_size=2, global_batch_size=2, warmup_steps=1, num_seeds=1,
    calibration_samples=4, calibration_seq_length=64, layer_importance_samples=4, match_factor=2, val_rows=8,
    speed_input_len=32, speed_output_len=4, speed_repeats=1, workers=1)
