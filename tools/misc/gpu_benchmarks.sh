#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md ("Measuring on a GPU") in one
# run of at most DEADLINE seconds, for a CUDA machine (CI has none):
#
#   bash tools/misc/gpu_benchmarks.sh OUT_DIR [AUTOFOCUS_CHECKPOINT]
#
# On a lent device machine (one `run` call of at most 600 s; `../shared`
# does not travel there, and at most 8 files of 16 MiB come back from
# $OUT), once here:
#
#   cp -r ../shared/gpu-kit .gpu-kit && echo .gpu-kit >> .git/info/exclude
#
# then the run tool with timeout_s 600, carry [".gpu-kit",
# "work_dirs/demo/autofocus_faster-rcnn_r18-w16_fpn_12e_demo/epoch_2.pth"]
# and the command
#
#   MMSNIP_GPU_KIT=.gpu-kit bash tools/misc/gpu_benchmarks.sh "$OUT/gpu" \
#       work_dirs/demo/autofocus_faster-rcnn_r18-w16_fpn_12e_demo/epoch_2.pth
#
# OUT_DIR receives two files, rewritten after every step: results.tgz
# (every step's log, the tables (json, md, png) and the configs written)
# and summary.log (this script's own lines). The files themselves are in
# WORK_DIR. Steps, most important first:
#
#   setup        with MMSNIP_GPU_KIT: the offline OpenMMLab kit into
#                SITE_DIR, its mmcv CUDA build (about 250-300 s); stops
#                the script if it fails
#   environment  the card, versions, mmcv's CUDA ops (nms, roi_align)
#                against their CPU versions; stops the script if it fails
#                (no CUDA: stops here)
#   demo_data    only when data/demo is missing (seconds)
#   train_amp    tools/benchmark.py train: the demo SNIPER config with AMP
#                at batch 32, TRAIN_WORKERS loader workers, its own collate
#                (mmsnip.pseudo_collate_by_value): samples/s, data wait
#                (target: at most 5%), memory
#   infer_warmupN  (N = INFER_IMAGES) with AUTOFOCUS_CHECKPOINT (weights
#                of the AutoFocus demo config, from `make demo`):
#                tools/benchmark.py infer, pyramid, AutoFocus (t 0.05, 0.3)
#                and oracle after one untimed pass over the same images
#                (every input shape set up before it is timed)
#   train_amp_pseudo_collate  the same as train_amp with MMEngine's
#                pseudo_collate: the collate A/B within this run
#   infer_one_batch  every FocusChip of a scale in one padded batch
#                (max_pad_ratio=100, max_batch=64: fewer, larger passes)
#   train_more   SNIPER fp32, SNIPER AMP with image_window 8, the
#                single-scale baseline with AMP
#   infer_warmup2  as infer_warmupN after only 2 warm-up images (the
#                setting of the published H200 table)
#
# Every step runs under a time limit: the smaller of its own and what is
# left before DEADLINE (seconds from the script's start) less
# DEADLINE_MARGIN and the 10 s a timed-out step may take to die; a step
# that would get less than its minimum (60 s for setup, train and infer,
# 20 s for the others) is skipped, and said so.
# A failed or timed-out step is reported and the next one still runs
# (except setup and environment). The exit status is the number of steps
# that failed or were skipped for time. Without AUTOFOCUS_CHECKPOINT the
# infer steps are skipped, and said so at the end. Environment:
#   MMSNIP_GPU_KIT=DIR  the kit (setup-gpu.sh, wheels, mmcv source), in the
#                       repository (carried) on a device machine
#   SITE_DIR=/tmp/site  where the kit installs (put on PYTHONPATH)
#   WORK_DIR            the step files (default: a new temporary folder)
#   PYTHON              the interpreter (default: python3 with the kit, the
#                       one it installs for; else python, else python3)
#   DEADLINE=570 DEADLINE_MARGIN=15
#   STEPS="NAME ..."   only these measurement steps (of train_amp,
#                       infer_warmupN, train_amp_pseudo_collate,
#                       infer_one_batch, train_more, infer_warmup2), in
#                       the order above; setup, environment and demo_data
#                       run as always (default: every step)
#   TRAIN_ITERS=30 TRAIN_WORKERS=12 INFER_IMAGES=16
#   SETUP_TIMEOUT=420 TRAIN_TIMEOUT=300 INFER_TIMEOUT=150 (seconds a step)
# The mmcv wheel the kit builds is not kept (over the 16 MiB a file may
# come back with); a second run on the same, still warm, machine finds
# mmcv installed in SITE_DIR and skips the build.
set -uo pipefail
usage() {
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { print }' "$0" >&2
}
die() {
    echo "error: $*" >&2
    exit 2
}
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    usage
    exit 2
fi
# Checked before anything else: a missing kit loses the whole call.
KIT=
if [ -n "${MMSNIP_GPU_KIT:-}" ]; then
    [ -f "$MMSNIP_GPU_KIT/setup-gpu.sh" ] || die \
        "MMSNIP_GPU_KIT=$MMSNIP_GPU_KIT has no setup-gpu.sh. On a lent" \
        "device machine" \
        "../shared does not exist: copy the kit into the repository and" \
        "carry it (cp -r ../shared/gpu-kit .gpu-kit; echo .gpu-kit >>" \
        ".git/info/exclude; the run tool's carry: \".gpu-kit\"; then" \
        "MMSNIP_GPU_KIT=.gpu-kit)"
    KIT=$(cd "$MMSNIP_GPU_KIT" && pwd)
fi
for var in DEADLINE DEADLINE_MARGIN TRAIN_ITERS TRAIN_WORKERS INFER_IMAGES \
    SETUP_TIMEOUT TRAIN_TIMEOUT INFER_TIMEOUT; do
    case ${!var:-0} in
        *[!0-9]*) die "$var=${!var} is not a whole number of seconds" \
            "or items" ;;
    esac
    # decimal, also with leading zeros (bash reads 08 as octal)
    [ -n "${!var:-}" ] && printf -v "$var" '%d' "$((10#${!var}))"
done
# The measurement steps, in the order they run; STEPS selects some.
MEASURED="train_amp infer_warmup${INFER_IMAGES:-16} train_amp_pseudo_collate"
MEASURED="$MEASURED infer_one_batch train_more infer_warmup2"
read -r -a SELECTED <<<"${STEPS:-}"
for name in "${SELECTED[@]}"; do
    case " $MEASURED " in
        *" $name "*) ;;
        *) die "STEPS names \"$name\", not a measurement step of this" \
            "script; they are: $MEASURED (setup, environment and" \
            "demo_data run as always)" ;;
    esac
done
CHOSEN=" ${SELECTED[*]} "  # space-separated, padded; "  " when none
CKPT=
if [ $# -eq 2 ]; then
    [ -f "$2" ] || die "checkpoint \"$2\" does not exist"
    CKPT=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
fi
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
WORK=${WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/mmsnip_gpu.XXXXXX")}
mkdir -p "$WORK" || exit 2
WORK=$(cd "$WORK" && pwd)
case $WORK/ in
    "$OUT"/*) die "WORK_DIR ($WORK) must be outside OUT_DIR ($OUT): only" \
        "OUT_DIR's two files are meant to come back" ;;
esac
case $OUT/ in
    "$WORK"/*) die "OUT_DIR ($OUT) must be outside WORK_DIR ($WORK): the" \
        "archive of WORK_DIR would hold itself" ;;
esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
if [ -n "$KIT" ]; then
    PY=${PYTHON:-python3}
else
    PY=${PYTHON:-$(command -v python || command -v python3)}
fi
DEADLINE=${DEADLINE:-570}
MARGIN=${DEADLINE_MARGIN:-15}
SITE=${SITE_DIR:-/tmp/site}
ITERS=${TRAIN_ITERS:-30}
WORKERS=${TRAIN_WORKERS:-12}
PERSIST=True  # the loader's workers stay between epochs; none: False
[ "$WORKERS" -eq 0 ] && PERSIST=False
IMAGES=${INFER_IMAGES:-16}
TRAIN_LIMIT=${TRAIN_TIMEOUT:-300}
INFER_LIMIT=${INFER_TIMEOUT:-150}
SNIPER=configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py
SINGLE=configs/baseline/faster-rcnn_r18-w16_fpn_12e_demo.py
AUTOFOCUS=configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py
FAILED=0
SKIPPED=
export PYTHONUNBUFFERED=1

say() {  # a line on stdout and in summary.log
    echo "$*" | tee -a "$WORK/summary.log"
}

archive() {  # OUT_DIR's two files, from what WORK_DIR holds now
    cp "$WORK/summary.log" "$OUT/summary.log"
    tar czf "$OUT/results.tgz.part" --exclude='*.whl' -C "$WORK" . &&
        mv -f "$OUT/results.tgz.part" "$OUT/results.tgz"
}

step() {  # step NAME LIMIT MIN COMMAND...: run under a time limit, log,
          # report, archive; skipped when less than MIN s are left
    local name=$1 limit=$2 need=$3 start=$SECONDS left rc
    shift 3
    if [ "${#SELECTED[@]}" -gt 0 ] && [[ " $MEASURED " == *" $name "* ]] &&
        [[ "$CHOSEN" != *" $name "* ]]; then
        say "== $name: not selected (STEPS=${SELECTED[*]})"
        return 0
    fi
    # less the 10 s timeout may wait after its signal before killing
    left=$((DEADLINE - SECONDS - MARGIN - 10))
    if [ "$left" -lt "$need" ]; then
        say "== $name: SKIPPED: $left s left before the deadline" \
            "(DEADLINE=$DEADLINE s from the start, less" \
            "DEADLINE_MARGIN=$MARGIN s and 10 s for a timed-out step to" \
            "die), the step needs at least $need s"
        SKIPPED="$SKIPPED $name"
        archive
        return 125
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    say "== $name (limit $limit s, at $SECONDS s): $*"
    timeout -k 10 "$limit" "$@" >"$WORK/$name.log" 2>&1
    rc=$?
    tail -n 25 "$WORK/$name.log"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        say "== $name: TIMED OUT after $limit s (log: $name.log)"
    fi
    say "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
    archive
    return "$rc"
}

finish() {  # the tables and the last line; exit status: failed + skipped
    local skipped=0 note=${1:-} table
    for table in "$WORK"/*/*.md; do
        [ -f "$table" ] && { echo "-- ${table#"$WORK"/}"; cat "$table"; }
    done
    [ -n "$SKIPPED" ] && skipped=$(wc -w <<<"$SKIPPED")
    say "== done at $SECONDS s: $FAILED failed step(s)," \
        "$skipped skipped for time${SKIPPED:+ (${SKIPPED# })}$note;" \
        "results: $OUT/results.tgz (files: $WORK)"
    archive
    exit $((FAILED + skipped))
}

stop() {  # after a step the others need
    finish "; stopped: $1 did not succeed"
}

say "== gpu_benchmarks.sh: deadline $DEADLINE s, work files in $WORK"
if [ -n "$KIT" ]; then
    step setup "${SETUP_TIMEOUT:-420}" 60 \
        bash "$KIT/setup-gpu.sh" "$SITE" || stop setup
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

step environment 120 20 "$PY" - <<'EOF' || stop environment
import shutil
import subprocess

import mmcv
import mmdet
import mmengine
import torch
from mmcv.ops import nms, roi_align

print('torch', torch.__version__, 'mmcv', mmcv.__version__, 'mmdet',
      mmdet.__version__, 'mmengine', mmengine.__version__)
if not torch.cuda.is_available():
    raise SystemExit('error: no CUDA device visible to torch')
if shutil.which('nvidia-smi'):
    print(subprocess.run(['nvidia-smi'], capture_output=True,
                         text=True).stdout)
print(torch.cuda.get_device_name(0), 'CUDA', torch.version.cuda, 'cuDNN',
      torch.backends.cudnn.version())
# mmcv's CUDA ops give the CPU ops' results (built for this card).
gen = torch.Generator().manual_seed(0)
xy = torch.rand(2000, 2, generator=gen) * 800
boxes = torch.cat([xy, xy + 16 + torch.rand(2000, 2, generator=gen) * 200],
                  1)
scores = torch.rand(2000, generator=gen)
keep_cpu = nms(boxes, scores, 0.5)[1]
keep_gpu = nms(boxes.cuda(), scores.cuda(), 0.5)[1].cpu()
assert torch.equal(keep_cpu, keep_gpu), 'nms: CUDA and CPU differ'
feats = torch.rand(2, 16, 64, 64, generator=gen)
rois = torch.cat([torch.randint(0, 2, (300, 1), generator=gen).float(),
                  boxes[:300] / 16], 1)
pooled_cpu = roi_align(feats, rois, (7, 7), 0.5, 2, 'avg', True)
pooled_gpu = roi_align(feats.cuda(), rois.cuda(), (7, 7), 0.5, 2, 'avg',
                       True).cpu()
assert torch.allclose(pooled_cpu, pooled_gpu, atol=1e-4), \
    'roi_align: CUDA and CPU differ'
print('mmcv CUDA ops: nms and roi_align equal their CPU versions')
EOF

if [ ! -f data/demo/annotations/instances_val.json ]; then
    step demo_data 120 20 "$PY" tools/make_demo_dataset.py data/demo ||
        stop demo_data
fi

# AMP variants as configs, so that fp32 and AMP rows share one table.
CFGS=$WORK/configs
mkdir -p "$CFGS"
cat >"$CFGS/sniper_amp.py" <<EOF
_base_ = ['$ROOT/$SNIPER']
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
EOF
cat >"$CFGS/sniper_amp_pseudo_collate.py" <<EOF
_base_ = ['$CFGS/sniper_amp.py']
train_dataloader = dict(collate_fn=dict(type='pseudo_collate'))
EOF
cat >"$CFGS/sniper_amp_window8.py" <<EOF
_base_ = ['$CFGS/sniper_amp.py']
train_dataloader = dict(sampler=dict(image_window=8))
EOF
cat >"$CFGS/single_amp.py" <<EOF
_base_ = ['$ROOT/$SINGLE']
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
EOF

NO_CKPT=
[ -z "$CKPT" ] && NO_CKPT="; infer steps SKIPPED: no AUTOFOCUS_CHECKPOINT"

# Every training step's options: the iterations, a limit per config,
# batch 32 and the loader workers (--cfg-options last: it takes the rest).
TRAIN_OPTS=(--iters "$ITERS" --warmup 5 --timeout 240
    --cfg-options train_dataloader.batch_size=32
    "train_dataloader.num_workers=$WORKERS"
    "train_dataloader.persistent_workers=$PERSIST")

step train_amp "$TRAIN_LIMIT" 60 \
    "$PY" tools/benchmark.py train "$CFGS/sniper_amp.py" \
    --labels 'SNIPER chips' --out-dir "$WORK/train_amp" "${TRAIN_OPTS[@]}"

if [ -n "$CKPT" ]; then
    step "infer_warmup$IMAGES" "$INFER_LIMIT" 60 \
        "$PY" tools/benchmark.py infer "$AUTOFOCUS" "$CKPT" \
        --num-images "$IMAGES" \
        --methods pyramid autofocus oracle --thresholds 0.05 0.3 \
        --warmup "$IMAGES" --out-dir "$WORK/infer_warmup$IMAGES"
fi

# The collate A/B: MMEngine's default collate on the same config.
step train_amp_pseudo_collate "$TRAIN_LIMIT" 60 \
    "$PY" tools/benchmark.py train "$CFGS/sniper_amp_pseudo_collate.py" \
    --labels 'SNIPER chips' --out-dir "$WORK/train_amp_pseudo_collate" \
    "${TRAIN_OPTS[@]}"

if [ -n "$CKPT" ]; then
    # Fewer, larger forward passes: every FocusChip of a scale in one
    # padded batch (the lever if a pass costs the same whatever its size).
    step infer_one_batch "$INFER_LIMIT" 60 \
        "$PY" tools/benchmark.py infer "$AUTOFOCUS" "$CKPT" \
        --num-images "$IMAGES" --methods pyramid autofocus \
        --thresholds 0.05 --warmup "$IMAGES" \
        --out-dir "$WORK/infer_one_batch" \
        --cfg-options tta_model.max_pad_ratio=100 tta_model.max_batch=64
fi

step train_more "$TRAIN_LIMIT" 60 \
    "$PY" tools/benchmark.py train "$SNIPER" \
    "$CFGS/sniper_amp_window8.py" "$CFGS/single_amp.py" \
    --labels 'SNIPER chips' 'SNIPER chips, image_window 8' \
    'single scale' --out-dir "$WORK/train_more" "${TRAIN_OPTS[@]}"

if [ -n "$CKPT" ] && [ "$IMAGES" != 2 ]; then
    step infer_warmup2 "$INFER_LIMIT" 60 \
        "$PY" tools/benchmark.py infer "$AUTOFOCUS" "$CKPT" \
        --num-images "$IMAGES" \
        --methods pyramid autofocus oracle --thresholds 0.05 0.3 \
        --warmup 2 --out-dir "$WORK/infer_warmup2"
fi
finish "$NO_CKPT"
