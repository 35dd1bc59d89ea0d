# Sourced by the array scripts: the checkout (REPO, on PYTHONPATH), the Python, and this task's
# --shard i/n. Tasks run in the submit directory, so relative paths mean what they meant there.
# PM_SHARDS=n names the number of shards; without it a full array (--array=0-(n-1)) gives it. A
# partial array (resubmitting a few tasks, --array=3,5) must set PM_SHARDS, or the tasks would
# take other assets than the first run's.
set -euo pipefail
: "${SLURM_ARRAY_TASK_ID:?submit this script as a job array: sbatch --array=0-N ...}"
REPO=$(cd "${PM_REPO:-${SLURM_SUBMIT_DIR:-.}}" && pwd)
export PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}"
PY=${PM_PYTHON:-python}
if [ -n "${PM_SHARDS:-}" ]; then
    SHARDS=$PM_SHARDS
elif [ "${SLURM_ARRAY_TASK_MIN:-0}" = 0 ] && [ "$((SLURM_ARRAY_TASK_MAX + 1))" = "${SLURM_ARRAY_TASK_COUNT:-}" ]; then
    SHARDS=$SLURM_ARRAY_TASK_COUNT
else
    echo "error: a partial array (tasks ${SLURM_ARRAY_TASK_MIN}-${SLURM_ARRAY_TASK_MAX}) needs PM_SHARDS=n" \
         "(the n of the first run): sbatch --export=ALL,PM_SHARDS=n ..." >&2
    exit 2
fi
if [ "$SLURM_ARRAY_TASK_ID" -ge "$SHARDS" ]; then
    echo "error: task $SLURM_ARRAY_TASK_ID is outside PM_SHARDS=$SHARDS" >&2
    exit 2
fi
SHARD="$SLURM_ARRAY_TASK_ID/$SHARDS"
echo "puppet-master: $SLURM_JOB_NAME shard $SHARD on $(hostname) in $(pwd), checkout $REPO"
