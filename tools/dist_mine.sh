#!/usr/bin/env bash
# Distributed proposal mining:
#   bash tools/dist_mine.sh CONFIG CHECKPOINT NUM_PROCS --out props.pkl [...]

CONFIG=$1
CHECKPOINT=$2
GPUS=$3
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
$PYTHON -m torch.distributed.launch \
    --nproc_per_node=$GPUS \
    --master_addr=$MASTER_ADDR \
    --master_port=$PORT \
    "$(dirname "$0")"/mine_proposals.py \
    "$CONFIG" \
    "$CHECKPOINT" \
    --launcher pytorch "${@:4}"
