#!/usr/bin/env bash
# Distributed training through torch.distributed (mmengine's pytorch launcher):
#   bash tools/dist_train.sh CONFIG NUM_PROCESSES [tools/train.py options]
# NCCL on GPUs; gloo on CPUs (chosen by tools/train.py). NNODES, NODE_RANK, MASTER_ADDR and
# PORT work as in the OpenMMLab libraries' scripts.
set -euo pipefail
CONFIG=$1
NPROC=$2
shift 2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
# torchrun's own default (one thread per process), without the banner it prints when it sets it
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" --master_port="${PORT:-29500}" \
    --nproc_per_node="$NPROC" \
    "$ROOT/tools/train.py" "$CONFIG" --launcher pytorch "$@"
