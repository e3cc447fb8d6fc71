#!/usr/bin/env bash
# launch/torchrun.sh: continue the bundle's run on a cluster without Slurm, one torchrun per node.
#
#   MASTER_ADDR=node0 NODE_RANK=i launch/torchrun.sh [--steps S] [more digpt_torch.train flags]
#
# Run it on each of the @NODES@ node(s), NODE_RANK 0..@NODES@-1, with the bundle at the same path (or synced) and
# the dataset at DATA_ROOT on every node. Each node starts @GPUS_PER_NODE@ rank(s), @WORLD_SIZE@ in all
# (@PER_RANK_BATCH@ images per rank per micro-batch). Only rank 0 (node 0) writes the run folder, BUNDLE/run.
# Environment: MASTER_ADDR (node 0's address; default 127.0.0.1), MASTER_PORT (default 29500), NODE_RANK (default
# 0), DIGPT_DATA_ROOT (default @DATA_ROOT@; empty: the manifest's root), PYTHON (default: the first of python3,
# /usr/bin/python3 that imports torch), DIGPT_LAUNCHER=builtin to use digpt_torch.launch instead of torchrun
# (torch 1.13 on Python 3.11, whose torchrun fails in to_map).
# SIGTERM (scheduler preemption) and SIGINT reach the ranks through torchrun: each writes a checkpoint at the end
# of the step under way and exits 0; torch 2.x's torchrun allows the ranks 30 s for that before SIGKILL. Run the
# same command again to continue from the newest checkpoint.
#
# Placeholders the bundle command fills (digpt scaleout):
#   @NODES@ @GPUS_PER_NODE@ @WORLD_SIZE@ @PER_RANK_BATCH@   the layout the bundle was checked for
#   @DATA_ROOT@   the dataset folder on the cluster (--data-root; may be empty)
set -euo pipefail
BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NODES=@NODES@
GPUS=@GPUS_PER_NODE@
DATA_ROOT="${DIGPT_DATA_ROOT:-@DATA_ROOT@}"
case "$DATA_ROOT" in @*@) DATA_ROOT="" ;; esac
pick_python() {
  for p in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  echo "torchrun.sh: no Python with torch found (set PYTHON=/path/to/python3)" >&2
  return 1
}
PY="$(pick_python)"
export PYTHONPATH="$BUNDLE${PYTHONPATH:+:$PYTHONPATH}"
TRAIN=(--bundle "$BUNDLE")
[ -n "$DATA_ROOT" ] && TRAIN+=(--data-root "$DATA_ROOT")
ADDR="${MASTER_ADDR:-127.0.0.1}"
PORT="${MASTER_PORT:-29500}"
RANK_OF_NODE="${NODE_RANK:-0}"
if [ "${DIGPT_LAUNCHER:-torchrun}" = builtin ]; then
  exec "$PY" -m digpt_torch.launch --nproc "$GPUS" --nnodes "$NODES" --node-rank "$RANK_OF_NODE" \
    --master-addr "$ADDR" --master-port "$PORT" -- "${TRAIN[@]}" "$@"
fi
exec "$PY" -m torch.distributed.run --nnodes="$NODES" --node_rank="$RANK_OF_NODE" --nproc_per_node="$GPUS" \
  --master_addr="$ADDR" --master_port="$PORT" -m digpt_torch.train "${TRAIN[@]}" "$@"
