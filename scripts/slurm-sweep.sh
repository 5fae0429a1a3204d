#!/usr/bin/env bash
# Runs a `spex sweep` as a Slurm array job: task I of K explains the inputs K' with K' % K == I
# (one run directory per input in the shared OUT_DIR; the task's summary is
# OUT_DIR/sweep.shard-I-of-K.json). Submit with
#
#   sbatch --array=0-7 --gres=gpu:1 scripts/slurm-sweep.sh inputs.jsonl OUT_DIR [spex sweep options...]
#
# Resubmitting the same array continues: finished inputs are reused, an interrupted input resumes
# from its sample store. Every task needs the same options (the design is deterministic from
# --seed). One GPU per task.
#SBATCH --job-name=spex-sweep
#SBATCH --output=spex-sweep-%A_%a.log
set -euo pipefail
inputs="${1:?usage: slurm-sweep.sh INPUTS.jsonl OUT_DIR [spex sweep options...]}"
out="${2:?usage: slurm-sweep.sh INPUTS.jsonl OUT_DIR [spex sweep options...]}"
shift 2
index="${SLURM_ARRAY_TASK_ID:?run as a Slurm array job (sbatch --array=0-K)}"
count="${SLURM_ARRAY_TASK_COUNT:?run as a Slurm array job}"
exec "${SPEX:-spex}" sweep --inputs "$inputs" --out "$out" --shard "$index/$count" --log json "$@"
