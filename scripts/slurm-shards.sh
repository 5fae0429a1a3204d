#!/usr/bin/env bash
# Runs one spex explanation as a Slurm array job: task I of K computes shard I/K into a shared
# run directory; the last step merges. Submit with
#
#   sbatch --array=0-7 scripts/slurm-shards.sh OUT_DIR [spex explain options...]
#   # when all tasks are done:
#   spex merge OUT_DIR
#
# or let Slurm run the merge after the array:
#
#   jid=$(sbatch --parsable --array=0-7 scripts/slurm-shards.sh OUT_DIR --oracle "python3 drv.py" --n 120)
#   sbatch --dependency=afterok:$jid --wrap "spex merge OUT_DIR"
#
# Each task is resumable: resubmitting a failed or preempted task continues its shard (--resume).
# The design is deterministic from --seed, so every task computes the same masks; every task needs
# the same options. One GPU per task: request it with --gres=gpu:1.
#SBATCH --job-name=spex
#SBATCH --output=spex-%A_%a.log
set -euo pipefail
out="${1:?usage: slurm-shards.sh OUT_DIR [spex explain options...]}"
shift
index="${SLURM_ARRAY_TASK_ID:?run as a Slurm array job (sbatch --array=0-K)}"
count="${SLURM_ARRAY_TASK_COUNT:?run as a Slurm array job}"
spex="${SPEX:-spex}"
store="$out/samples.shard-$index-of-$count.store"
resume=()
[ -e "$store" ] && resume=(--resume)
exec "$spex" explain "$@" --out "$out" --shard "$index/$count" --log json "${resume[@]}"
