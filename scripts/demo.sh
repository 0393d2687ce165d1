#!/usr/bin/env bash
# The main job on the built-in tiny default: what `make demo` runs.
#
# The whole base-to-instruct pipeline as one NeMo-Run experiment: tiny teacher (trained once on
# the offline corpus, then cached) -> group-aware pruning to ~56% of the parameters ->
# distillation -> instruct teacher -> SFT-KD x2 -> RPO x2 -> long-context SFT -> evaluation of
# teacher vs final model. Each stage writes into its own folder under DEMO_DIR; a rerun skips
# finished stages and resumes an interrupted one.
#
# Env: DEMO_DIR (default outputs/demo). Expects `nemo-minitron` on PATH (make demo does that).
set -euo pipefail

DEMO_DIR="${DEMO_DIR:-outputs/demo}"
export HF_HUB_OFFLINE=1
# On a shared or small machine, spinning OpenMP threads cost more than they gain.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"

echo "== nemo-minitron demo: outputs in ${DEMO_DIR}/"
nemo-minitron pipeline recipe=tiny output_dir="${DEMO_DIR}" --yes
echo "== demo done: stages in ${DEMO_DIR}/, report in ${DEMO_DIR}/09_eval/eval_report.md"
