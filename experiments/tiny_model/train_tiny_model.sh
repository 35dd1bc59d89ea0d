#!/usr/bin/env bash
# The tiny trained Puppet-Master from rendered clips to an evaluated pipeline folder, on one GPU (or
# the CPU, slowly). Every step resumes: run the same command again after an interruption.
#
#   experiments/tiny_model/train_tiny_model.sh TRAIN_RENDERS HELDOUT_RENDERS WORK_DIR
#
# TRAIN_RENDERS / HELDOUT_RENDERS: render roots of dataset_tools/build_corpus.py (or packs of
# dataset_tools/pack_renders.py, unpacked first). WORK_DIR receives components/, cache/, unet/
# (training checkpoints), pipeline/ and eval/. The knobs below are environment variables; the
# defaults are the run of the model card (backend/puppet_master/weights/MODEL_CARD.md).
set -euo pipefail

TRAIN=${1:?usage: train_tiny_model.sh TRAIN_RENDERS HELDOUT_RENDERS WORK_DIR}
HELDOUT=${2:?usage: train_tiny_model.sh TRAIN_RENDERS HELDOUT_RENDERS WORK_DIR}
WORK=${3:?usage: train_tiny_model.sh TRAIN_RENDERS HELDOUT_RENDERS WORK_DIR}
PY=${PYTHON:-python}
VAE_STEPS=${VAE_STEPS:-4000}           # VAE optimiser steps (videos of VAE_FRAMES frames, VAE_BATCH per step)
VAE_BATCH=${VAE_BATCH:-16}
VAE_FRAMES=${VAE_FRAMES:-4}
VAE_MINUTES=${VAE_MINUTES:-2.5}         # wall-clock cap of the VAE (it finishes with the steps done)
LATENT_CHANNELS=${LATENT_CHANNELS:-8}   # channels of the VAE's 32x32 latents (the U-Net takes twice this)
ENCODER_STEPS=${ENCODER_STEPS:-1500}
UNET_STEPS=${UNET_STEPS:-20000}
UNET_BATCH=${UNET_BATCH:-64}
UNET_LR=${UNET_LR:-1e-3}
UNET_WARMUP=${UNET_WARMUP:-200}
UNET_MINUTES=${UNET_MINUTES:-4.5}       # wall-clock cap of one U-Net run (checkpointed; re-run resumes)
UNET_EMA=${UNET_EMA:-0.999}
UNET_PRECISION=${UNET_PRECISION:-}      # no | bf16 | fp16 (default: bf16 on a GPU, no on the CPU)
UNET_CROP=${UNET_CROP:-0}               # latent window side for cropped steps (0: none; training/crops.py)
UNET_CROP_P=${UNET_CROP_P:-0}           # share of the steps that train on those windows
# UNET_INIT: a U-Net folder to start from (e.g. experiments/tiny_model/weights/tiny_unet/ema, the committed
# weights) instead of random weights; its layout must match the recipe's.
UNET_INIT=${UNET_INIT:-}
LOADER_WORKERS=${LOADER_WORKERS:-8}
CACHE_WORKERS=${CACHE_WORKERS:-4}
EVAL_STEPS=${EVAL_STEPS:-25}
EVAL=${EVAL:-1}                         # 0: export the held-out clips but leave the evaluation for later
DEVICE=${DEVICE:-$($PY -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')}
[ -n "$UNET_PRECISION" ] || { [ "$DEVICE" = cuda ] && UNET_PRECISION=bf16 || UNET_PRECISION=no; }
# COMPONENTS: a components folder of an earlier run (vae/, image_encoder/, feature_extractor/) to
# reuse instead of training stage 1 again.
COMPONENTS=${COMPONENTS:-}
# STOP_AFTER: cache or unet ends the run after that stage (the rest runs elsewhere or later).
STOP_AFTER=${STOP_AFTER:-}
# TIME_BUDGET_S: the whole command ends within this many seconds (a machine lent by the minute): the
# U-Net gets what the stages before it left, less UNET_RESERVE_S for its start, saving and archiving.
TIME_BUDGET_S=${TIME_BUDGET_S:-}
UNET_RESERVE_S=${UNET_RESERVE_S:-45}
for knob in TIME_BUDGET_S UNET_RESERVE_S; do
    [[ "${!knob}" =~ ^[0-9]*$ ]] || { echo "$knob must be whole seconds, got '${!knob}'" >&2; exit 2; }
done
STARTED=$(date +%s)
# ARCHIVE: a folder that receives a tar of each stage's result as soon as the stage ends (one file
# per stage, each under 16 MB), so a machine taken away mid-run still leaves what was done.
ARCHIVE=${ARCHIVE:-}

mkdir -p "$WORK"
stamp() { echo "[$(date +%H:%M:%S)] $*"; }
archive() {  # archive NAME DIR PATH... : tar PATHs (relative to DIR) into $ARCHIVE/NAME.tar
    [ -n "$ARCHIVE" ] || return 0
    local name=$1 dir=$2
    shift 2
    mkdir -p "$ARCHIVE" && tar cf "$ARCHIVE/$name.tar" -C "$dir" "$@" && stamp "archived $ARCHIVE/$name.tar"
}

if [ -n "$COMPONENTS" ]; then
    stamp "1/5 VAE and image encoder: reusing $COMPONENTS"
    for part in vae image_encoder feature_extractor; do
        [ -d "$COMPONENTS/$part" ] || { echo "COMPONENTS=$COMPONENTS has no $part/ folder" >&2; exit 2; }
    done
    if [ "$(realpath "$COMPONENTS")" != "$(realpath -m "$WORK/components")" ]; then
        mkdir -p "$WORK/components" && cp -r "$COMPONENTS"/. "$WORK/components/"
    fi
else
    stamp "1/5 VAE and image encoder ($DEVICE)"
    $PY -m experiments.tiny_model.train_tiny_components --renders "$TRAIN" --out "$WORK/components" --preload --device "$DEVICE" \
        --vae-steps "$VAE_STEPS" --vae-batch "$VAE_BATCH" --vae-frames "$VAE_FRAMES" --max-minutes "$VAE_MINUTES" \
        --latent-channels "$LATENT_CHANNELS" \
        --encoder-steps "$ENCODER_STEPS" --encoder-batch 64 --save-every 500 --no-progress
    archive components "$WORK/components" vae image_encoder feature_extractor vae_report.json encoder_report.json
fi

stamp "2/5 latent caches"
pids=()
for i in $(seq 0 $((CACHE_WORKERS - 1))); do
    $PY -m training.cache_latents --renders "$TRAIN" --svd "$WORK/components" --out "$WORK/cache/train" \
        --shard-size 16 --shard "$i/$CACHE_WORKERS" --device "$DEVICE" &
    pids+=($!)
done
$PY -m training.cache_latents --renders "$HELDOUT" --svd "$WORK/components" --out "$WORK/cache/heldout" \
    --shard-size 16 --device "$DEVICE"
for pid in "${pids[@]}"; do wait "$pid"; done
if [ "$STOP_AFTER" = cache ]; then stamp "done: $WORK/cache (STOP_AFTER=cache)"; exit 0; fi

if [ -n "$TIME_BUDGET_S" ]; then
    left=$(( TIME_BUDGET_S - ($(date +%s) - STARTED) - UNET_RESERVE_S ))
    [ "$left" -ge 30 ] || { stamp "TIME_BUDGET_S spent before the U-Net; run again to go on"; exit 0; }
    UNET_MINUTES=$(printf "%d.%02d" $((left / 60)) $((left % 60 * 100 / 60)))
fi
# the U-Net fits the latents of whichever VAE made the caches (trained above or reused)
C=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["latent_channels"])' "$WORK/components/vae/config.json")
stamp "3/5 U-Net ($UNET_MINUTES minutes at most; $C latent channels)"
INIT_ARGS=()
[ -z "$UNET_INIT" ] || INIT_ARGS=(--set model.init='"checkpoint"' --set "model.checkpoint_path=\"$UNET_INIT\"")
$PY -m training.train --config experiments/tiny_model/configs/tiny_trained.toml "${INIT_ARGS[@]}" \
    --set train.crop_size="$UNET_CROP" --set train.crop_probability="$UNET_CROP_P" \
    --set "output_dir=\"$WORK/unet\"" \
    --set model.unet_config.in_channels=$((2 * C)) --set model.unet_config.out_channels="$C" \
    --set "data.sources=[{name=\"procedural\", kind=\"cached\", path=\"$WORK/cache/train\", weight=1.0}]" \
    --set data.batch_size="$UNET_BATCH" --set train.global_batch_size="$UNET_BATCH" \
    --set data.num_workers="$LOADER_WORKERS" --set optim.learning_rate="$UNET_LR" --set optim.lr_warmup_steps="$UNET_WARMUP" \
    --set train.max_steps="$UNET_STEPS" --set train.max_minutes="$UNET_MINUTES" \
    --set train.ema_decay="$UNET_EMA" --set train.mixed_precision="\"$UNET_PRECISION\"" --set train.checkpoint_every=1000 --set train.log_every=50 --set train.cond_dropout=0.1

LATEST=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["checkpoint"])' "$WORK/unet/checkpoints/latest.json")
archive unet_ema "$WORK/unet" "checkpoints/$LATEST/ema" logs/metrics.csv config.json

if [ "$STOP_AFTER" = unet ]; then stamp "done: $WORK/unet (STOP_AFTER=unet)"; exit 0; fi

stamp "4/5 pipeline"
$PY -m training.assemble_pipeline --components "$WORK/components" --unet "$WORK/unet/checkpoints/$LATEST/ema" \
    --out "$WORK/pipeline"

stamp "5/5 evaluation on the held-out clips"
$PY -m training.export_dragamove --cache "$WORK/cache/heldout" --renders "$HELDOUT" --out "$WORK/eval/heldout"
archive eval_heldout "$WORK/eval" heldout
if [ "$EVAL" = 1 ]; then
    $PY -m training.evaluate_parts --data "$WORK/eval/heldout" --model "$WORK/pipeline" --out "$WORK/eval/result" \
        --steps "$EVAL_STEPS" --device "$DEVICE"
    archive eval_result "$WORK/eval" result/results.json result/table.md
fi
stamp "done: $WORK/pipeline"
