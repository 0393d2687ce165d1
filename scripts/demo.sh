#!/usr/bin/env bash
# The main job on the built-in default: what `make demo` runs.
#
# The whole base-to-instruct pipeline as one NeMo-Run experiment, from the teacher that ships in
# the package (nothing pretrains): group-aware width pruning to 64% of the parameters ->
# distillation -> evaluation of teacher vs pruned vs distilled -> instruct teacher -> SFT-KD x2 ->
# RPO x2 -> long-context SFT -> evaluation of the final model vs the instruct teacher. Each stage
# writes into its own folder under DEMO_DIR; a rerun skips finished stages and resumes an
# interrupted one.
#
# Env: DEMO_DIR (default outputs/demo). Expects `nemo-minitron` on PATH (make demo does that).
set -euo pipefail

DEMO_DIR="${DEMO_DIR:-outputs/demo}"
export HF_HUB_OFFLINE=1
# On a shared or small machine, spinning OpenMP threads cost more than they gain.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

echo "== nemo-minitron demo: outputs in ${DEMO_DIR}/"
nemo-minitron pipeline recipe=tiny output_dir="${DEMO_DIR}" --yes
echo "== demo done: stages in ${DEMO_DIR}/; what compression did: ${DEMO_DIR}/03_eval_distilled/eval_report.md;"
echo "   the final model vs the instruct teacher: ${DEMO_DIR}/10_eval/eval_report.md"
