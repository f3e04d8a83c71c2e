#!/usr/bin/env bash
# Distributed proposal mining:
#   bash tools/dist_mine.sh CONFIG CHECKPOINT NUM_PROCS --out props.pkl [...]
# NUM_PROCS processes on this node; NNODES, NODE_RANK, PORT and MASTER_ADDR
# as in dist_train.sh (several nodes need --out on a shared filesystem:
# rank 0 merges every rank's shards).

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
if [[ ! "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: bash $0 CONFIG CHECKPOINT NUM_PROCS --out props.pkl [...]" >&2
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
    "$(dirname "$0")"/mine_proposals.py \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
