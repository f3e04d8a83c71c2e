#!/usr/bin/env bash
# Distributed training: bash tools/dist_train.sh CONFIG NUM_PROCS [train.py args]
# NUM_PROCS processes on this node (one per GPU; on a CPU-only machine they
# use the gloo backend). NNODES, NODE_RANK, PORT and MASTER_ADDR as in mmdet.

CONFIG=$1
GPUS=$2
if [[ ! "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bash $0 CONFIG NUM_PROCS [train.py args]" >&2
    echo "error: NUM_PROCS must be a whole number >= 1, got '$GPUS'" >&2
    exit 2
fi
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
$PYTHON -m torch.distributed.launch \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$GPUS \
    --master_port=$PORT \
    "$(dirname "$0")"/train.py \
    "$CONFIG" \
    --launcher pytorch "${@:3}"
