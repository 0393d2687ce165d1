"""The budgets of the paper's ablations (``nemo-minitron ablations``, ``scripts/ablations.py``,
``scripts/compress_smollm2.py``), one pair per kind of teacher.

Hybrid (the shipped teacher, docs/teacher.md): ``DEFAULT`` is what docs/results.md reports (well under an
hour on 2 cores); ``QUICK`` (``quick=true`` / ``--quick``) is what the test suite runs: every
code path in a couple of minutes, numbers meaningless.

Plain decoder (SmolLM2-135M, ``model=smollm2-135m``): ``SMOLLM2`` is sized for <= 2 h on 2 idle
CPU cores (an estimate; the measured run took 3.85 h with one worker beside other work:
docs/smollm2_compression.md, "Budget"); ``SMOLLM2_QUICK`` is
the test suite's. Command-line ``num_seeds`` / ``steps`` / ``match_factor`` / ``workers``
override single values.
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

#: lm-eval's standard tasks (offline data) and the documents scored per task: the four where a
#: 135M model is clearly above chance (winogrande and arc_challenge sit at chance for SmolLM2-135M,
#: so they would add noise, not signal), 32 documents each (about 3 minutes per model on one core).
SMOLLM2_BENCHMARKS = {"hellaswag": 32, "arc_easy": 32, "piqa": 32, "lambada_openai_flat": 32}
SMOLLM2 = AblationSettings(
    steps=16, seq_length=256, micro_batch_size=8, global_batch_size=8, lr=5e-4, warmup_steps=2, num_seeds=2,
    calibration_samples=32, calibration_seq_length=128, layer_importance_samples=8, match_factor=4, val_rows=16,
    speed_input_len=256, speed_output_len=32, speed_repeats=3, workers=2, benchmarks=SMOLLM2_BENCHMARKS,
    benchmark_seeds=1, random_init_lr=2e-3)
SMOLLM2_QUICK = replace(
    SMOLLM2, steps=1, seq_length=32, micro_batch_size=1, global_batch_size=1, warmup_steps=0, num_seeds=1,
    calibration_samples=2, calibration_seq_length=32, layer_importance_samples=1, match_factor=2, val_rows=2,
    speed_input_len=8, speed_output_len=2, speed_repeats=1, workers=1, benchmarks={"lambada_openai_flat": 2})

#: kind of teacher (``nemo_minitron.ablations.variants.model_kind``) -> (default, quick) budgets
BUDGETS = {"hybrid": (DEFAULT, QUICK), "decoder": (SMOLLM2, SMOLLM2_QUICK)}
