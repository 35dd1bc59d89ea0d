#!/bin/bash
# Submit the data pipeline as Slurm job arrays with dependencies: render -> drags [-> latents],
# each followed by a merge that checks every shard finished and writes one report.
#
#   cluster/slurm/pipeline.sh --shards 64 --renders renders/ [--cache cache/ --svd SVD_DIR] \
#       [--render-args "--views 12"] [--drags-args "--seed 0"] [--cache-args "--device cuda"] \
#       [--sbatch-args "--partition=cpu"] -- INPUTS...
#
# Paths are relative to where it is run; the tasks run there too. Prints one line per job: "<stage> <job id>". Each stage
# starts when the previous array has ended (afterany), so what rendered gets drags even when some
# assets failed; the merges report what did not finish. Resubmitting the same command resumes.
set -euo pipefail
usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
SHARDS= RENDERS= CACHE= SVD= RENDER_ARGS= DRAGS_ARGS= CACHE_ARGS= SBATCH_ARGS=
while [ $# -gt 0 ]; do
    case "$1" in
        --shards) SHARDS=$2; shift 2 ;;
        --renders) RENDERS=$2; shift 2 ;;
        --cache) CACHE=$2; shift 2 ;;
        --svd) SVD=$2; shift 2 ;;
        --render-args) RENDER_ARGS=$2; shift 2 ;;
        --drags-args) DRAGS_ARGS=$2; shift 2 ;;
        --cache-args) CACHE_ARGS=$2; shift 2 ;;
        --sbatch-args) SBATCH_ARGS=$2; shift 2 ;;
        --) shift; break ;;
        -h|--help) usage ;;
        *) echo "error: unknown option $1" >&2; usage ;;
    esac
done
[ -n "$SHARDS" ] && [ -n "$RENDERS" ] && [ $# -gt 0 ] || { echo "error: need --shards, --renders and INPUTS" >&2; usage; }
[[ "$SHARDS" =~ ^[1-9][0-9]*$ ]] || { echo "error: --shards must be a positive integer, got $SHARDS" >&2; exit 2; }
if [ -n "$CACHE" ] && [ -z "$SVD" ]; then echo "error: --cache needs --svd (the SVD img2vid folder)" >&2; exit 2; fi
HERE=$(cd "${PM_REPO:-$(dirname "$0")/../..}" && pwd)
S="$HERE/cluster/slurm"
export PM_REPO=$HERE PM_SHARDS=$SHARDS
# shellcheck disable=SC2086  # the *_ARGS are option lists, split on purpose
submit() { sbatch --parsable --export=ALL $SBATCH_ARGS "$@" | cut -d';' -f1; }
LAST=$((SHARDS - 1))
R=$(submit --array=0-$LAST "$S/render.sbatch" "$@" --out "$RENDERS" $RENDER_ARGS)
echo "render $R"
echo "render-merge $(submit --dependency=afterany:$R "$S/merge.sbatch" "$RENDERS" render "$SHARDS")"
D=$(submit --array=0-$LAST --dependency=afterany:$R "$S/drags.sbatch" "$RENDERS" $DRAGS_ARGS)
echo "drags $D"
echo "drags-merge $(submit --dependency=afterany:$D "$S/merge.sbatch" "$RENDERS" drags "$SHARDS")"
if [ -n "$CACHE" ]; then
    C=$(submit --array=0-$LAST --dependency=afterany:$D "$S/cache.sbatch" --renders "$RENDERS" --svd "$SVD" \
        --out "$CACHE" $CACHE_ARGS)
    echo "cache $C"
    echo "cache-merge $(submit --dependency=afterany:$C "$S/merge.sbatch" "$CACHE" cache "$SHARDS")"
fi
