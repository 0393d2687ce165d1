#!/usr/bin/env bash
# The main job on the built-in tiny default: what `make demo` runs.
#
# Today: train (or reuse, if cached) the tiny NemotronH teacher. As stages land, this file
# grows into the whole tiny pipeline (teacher -> prune -> distill -> SFT-KD -> RPO ->
# long-context -> eval); once `nemo-minitron pipeline` exists it becomes that one command.
#
# Env: DEMO_DIR (default outputs/demo). Expects `nemo-minitron` on PATH (make demo does that).
set -euo pipefail

DEMO_DIR="${DEMO_DIR:-outputs/demo}"
export HF_HUB_OFFLINE=1

echo "== nemo-minitron demo: outputs in ${DEMO_DIR}/"

# 1. Teacher: the tiny recipe (recipes/tiny.py); cached, a rerun reuses the checkpoint.
nemo-minitron pretrain --factory tiny output_dir="${DEMO_DIR}/teacher" --yes

echo "== demo done: teacher checkpoint in ${DEMO_DIR}/teacher"
