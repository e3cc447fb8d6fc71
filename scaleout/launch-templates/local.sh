#!/usr/bin/env bash
# launch/local.sh: continue the bundle's run on this machine with N local ranks (DDP over gloo on the CPU, nccl when
# CUDA is there), through digpt_torch's own launcher (Debian's torchrun is broken on Python 3.11).
#
#   launch/local.sh [--nproc N] [--steps S] [more digpt_torch.train flags, e.g. --device cpu]
#
# --nproc N    ranks (default @LOCAL_NPROC@); the data order and the losses do not depend on it
# --steps S    stop after global step S (a checkpoint is written there); default: the run's steps
# Environment: PYTHON (an interpreter with torch >= 1.13; default: the first of python3, /usr/bin/python3 that
# imports torch), DIGPT_DATA_ROOT (where the dataset is, if it moved since the bundle was made).
# Exit status: the trainer's (0: finished, or stopped by SIGTERM/SIGINT/SIGUSR1 with a checkpoint; 2: bad input;
# 3: non-finite loss) or the failed rank's.
#
# Placeholders the bundle command fills (digpt scaleout):
#   @LOCAL_NPROC@   default --nproc on this machine (e.g. 1)
#   @PYTHON@        the interpreter that imported torch when the bundle was made (tried first; may be empty)
set -euo pipefail
BUNDLE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NPROC="@LOCAL_NPROC@"
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nproc) NPROC="$2"; shift 2 ;;
    --nproc=*) NPROC="${1#--nproc=}"; shift ;;
    *) ARGS+=("$1"); shift ;;
  esac
done
pick_python() {
  for p in ${PYTHON:-} @PYTHON@ python3 /usr/bin/python3; do
    case "$p" in @*@) continue ;; esac
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import torch' >/dev/null 2>&1; then echo "$p"; return 0; fi
  done
  echo "local.sh: no Python with torch found (set PYTHON=/path/to/python3; Debian: apt install python3-torch)" >&2
  return 1
}
PY="$(pick_python)"
export PYTHONPATH="$BUNDLE${PYTHONPATH:+:$PYTHONPATH}"
exec "$PY" -m digpt_torch.launch --nproc "$NPROC" -- --bundle "$BUNDLE" ${ARGS[@]+"${ARGS[@]}"}
