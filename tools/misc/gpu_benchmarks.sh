#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md ("On a GPU") in one run, for a
# CUDA machine (CI has none):
#
#   bash tools/misc/gpu_benchmarks.sh OUT_DIR [AUTOFOCUS_CHECKPOINT]
#
# 1. environment: the card, versions, and mmcv's CUDA ops (nms, roi_align)
#    against their CPU versions;
# 2. training throughput of the demo SNIPER config at batch 32 with 12
#    loader workers (tools/benchmark.py train): fp32, AMP, AMP with the
#    shared decode (image_window 8), the single-scale baseline with AMP;
#    samples/s, MPix/s, data wait (target: at most 5% for chips), memory;
# 3. with AUTOFOCUS_CHECKPOINT (weights of the AutoFocus demo config, e.g.
#    work_dirs/demo/autofocus_faster-rcnn_r18-w16_fpn_12e_demo/epoch_2.pth
#    from `make demo`): AutoFocus against the full pyramid
#    (tools/benchmark.py infer), timed twice: after 2 warm-up images, and
#    after one untimed pass over the same images (every input shape seen
#    before: the difference is per-shape setup, such as cuDNN's plans),
#    and once more with every FocusChip of a scale in one padded batch
#    (max_pad_ratio=100, max_batch=64: fewer, larger forward passes).
#
# Every step logs to OUT_DIR/<step>.log and writes its tables there, under
# a time limit (a hung step does not take the machine's whole lease); a
# failed or timed-out step is reported and the next one still runs; the
# exit status is the number of failed steps. The demo data is generated
# when data/demo is missing (seconds). Without AUTOFOCUS_CHECKPOINT the
# infer steps are skipped, and said so at the end. Environment:
#   MMSNIP_GPU_KIT=DIR  first install the offline OpenMMLab kit
#                       (../shared/gpu-kit; its mmcv CUDA build takes about
#                       5 minutes) into /tmp/site and put that on PYTHONPATH;
#                       the mmcv wheel it builds is kept in OUT_DIR (give it
#                       to the next run as MMCV_WHEEL=PATH: no build)
#   PYTHON              the interpreter (default: python3 with the kit, the
#                       one it installs for; else python, else python3)
#   TRAIN_ITERS=30 TRAIN_WORKERS=12 INFER_IMAGES=16
#   SETUP_TIMEOUT=480 TRAIN_TIMEOUT=300 INFER_TIMEOUT=150 (seconds a step)
set -uo pipefail
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    sed -n '2,36p' "$0" >&2
    exit 2
fi
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
mkdir -p "$1" || exit 2
OUT=$(cd "$1" && pwd)
CKPT=${2:-}
if [ -n "$CKPT" ] && [ ! -f "$CKPT" ]; then
    echo "error: checkpoint \"$CKPT\" does not exist" >&2
    exit 2
fi
if [ -n "${MMSNIP_GPU_KIT:-}" ]; then
    PY=${PYTHON:-python3}
else
    PY=${PYTHON:-$(command -v python || command -v python3)}
fi
ITERS=${TRAIN_ITERS:-30}
WORKERS=${TRAIN_WORKERS:-12}
IMAGES=${INFER_IMAGES:-16}
SNIPER=configs/sniper/sniper_faster-rcnn_r18-w16_fpn_12e_demo.py
SINGLE=configs/baseline/faster-rcnn_r18-w16_fpn_12e_demo.py
AUTOFOCUS=configs/autofocus/autofocus_faster-rcnn_r18-w16_fpn_12e_demo.py
FAILED=0

step() {  # step NAME SECONDS COMMAND...: run under a time limit, log,
          # report; never stops the script
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "== $name: $*"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local rc=$?
    tail -n 25 "$OUT/$name.log"
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "== $name: TIMED OUT after $limit s (log: $OUT/$name.log)"
    fi
    echo "== $name: exit $rc after $((SECONDS - start)) s"
    [ "$rc" -eq 0 ] || FAILED=$((FAILED + 1))
    return "$rc"
}

if [ -n "${MMSNIP_GPU_KIT:-}" ]; then
    export MMCV_WHEEL_OUT=${MMCV_WHEEL_OUT:-$OUT}
    step setup "${SETUP_TIMEOUT:-480}" bash "$MMSNIP_GPU_KIT/setup-gpu.sh" \
        /tmp/site || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}

step environment 120 "$PY" - <<'EOF' || exit 1
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
print(torch.cuda.get_device_name(0))
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
    step demo_data 120 "$PY" tools/make_demo_dataset.py data/demo || exit 1
fi

# AMP variants as configs, so that fp32 and AMP rows share one table.
mkdir -p "$OUT/configs"
cat >"$OUT/configs/sniper_amp.py" <<EOF
_base_ = ['$ROOT/$SNIPER']
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
EOF
cat >"$OUT/configs/sniper_amp_window8.py" <<EOF
_base_ = ['$OUT/configs/sniper_amp.py']
train_dataloader = dict(sampler=dict(image_window=8))
EOF
cat >"$OUT/configs/single_amp.py" <<EOF
_base_ = ['$ROOT/$SINGLE']
optim_wrapper = dict(type='AmpOptimWrapper', loss_scale='dynamic')
EOF
step train "${TRAIN_TIMEOUT:-300}" \
    "$PY" tools/benchmark.py train "$SNIPER" \
    "$OUT/configs/sniper_amp.py" "$OUT/configs/sniper_amp_window8.py" \
    "$OUT/configs/single_amp.py" \
    --labels 'SNIPER chips' 'SNIPER chips' 'SNIPER chips, image_window 8' \
    'single scale' --iters "$ITERS" --warmup 5 --out-dir "$OUT/train" \
    --cfg-options train_dataloader.batch_size=32 \
    "train_dataloader.num_workers=$WORKERS" \
    train_dataloader.persistent_workers=True

SKIPPED=
if [ -z "$CKPT" ]; then
    SKIPPED=" (infer steps SKIPPED: no AUTOFOCUS_CHECKPOINT given)"
    echo "== infer: skipped (no AUTOFOCUS_CHECKPOINT given)"
else
    for warmup in 2 "$IMAGES"; do
        step "infer_warmup$warmup" "${INFER_TIMEOUT:-150}" \
            "$PY" tools/benchmark.py infer "$AUTOFOCUS" "$CKPT" \
            --num-images "$IMAGES" \
            --methods pyramid autofocus oracle --thresholds 0.05 0.3 \
            --warmup "$warmup" --out-dir "$OUT/infer_warmup$warmup"
    done
    # Fewer, larger forward passes: every FocusChip of a scale in one
    # padded batch (the lever if a pass costs the same whatever its size).
    step infer_one_batch "${INFER_TIMEOUT:-150}" \
        "$PY" tools/benchmark.py infer "$AUTOFOCUS" "$CKPT" \
        --num-images "$IMAGES" --methods pyramid autofocus \
        --thresholds 0.05 --warmup "$IMAGES" \
        --out-dir "$OUT/infer_one_batch" \
        --cfg-options tta_model.max_pad_ratio=100 tta_model.max_batch=64
fi
echo "== done: $FAILED failed step(s)$SKIPPED; tables in $OUT"
exit "$FAILED"
