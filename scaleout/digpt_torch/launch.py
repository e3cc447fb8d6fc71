"""A small launcher of our own: starts N ranks of a module with torch.distributed's environment variables.

    python3 -m digpt_torch.launch --nproc N [--module digpt_torch.train] [--nnodes M --node-rank R
        --master-addr HOST] [--master-port P] [--grace S] [--exit-grace S] -- ARGS...

runs `python3 -m MODULE ARGS...` N times with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
MASTER_ADDR and MASTER_PORT set (what torchrun sets), on 127.0.0.1 with a free port unless told otherwise. It exists
because Debian's torchrun (torch 1.13 on Python 3.11) fails in `to_map` (Python 3.11 changed how an IntFlag
iterates); on a cluster with torch 2.x, torchrun does the same job (launch/torchrun.sh uses it).

- SIGTERM, SIGINT and SIGUSR1 are forwarded to every rank (the trainer writes a checkpoint at the next step boundary
  and exits); a second SIGTERM or SIGINT kills them. The ranks run in their own process group, so a Ctrl-C in the
  terminal reaches them once, through here.
- When a rank fails (non-zero exit or killed by a signal), the others get SIGTERM, then SIGKILL after --grace
  seconds (they may be blocked in a collective with the dead rank), and the launcher exits with the failed rank's
  status (128 + signal number for a rank killed by a signal). It exits 0 only when every rank exits 0.
- A rank still running --exit-grace seconds after another exited 0 is killed (the trainer's ranks pass a last
  barrier before exiting, so it can only be stuck in its teardown); the status is then rank 0's.
- Each rank's pid is printed to stderr as `launch: rank R pid P`; if the launcher itself is killed, the ranks get
  SIGTERM from the kernel (PR_SET_PDEATHSIG).
- OMP_NUM_THREADS defaults to the CPUs of this machine divided among the ranks (at least 1), and
  OPENBLAS_NUM_THREADS / MKL_NUM_THREADS to OMP_NUM_THREADS.
"""
import argparse
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time

__all__ = ["main", "free_port"]


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup():
    # own process group (terminal signals reach the ranks through the launcher only); die with the launcher
    os.setpgid(0, 0)
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _status(code):
    """A Popen return code as a shell exit status (128 + n for a signal)."""
    return 128 + (-code) if code < 0 else code


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        i = argv.index("--")
        own, rest = argv[:i], argv[i + 1:]
    else:
        own, rest = argv, []
    ap = argparse.ArgumentParser(prog="python3 -m digpt_torch.launch",
                                 description="start N ranks of a module with torch.distributed's env variables")
    ap.add_argument("--nproc", type=int, default=1, help="ranks on this node (default 1)")
    ap.add_argument("--module", default="digpt_torch.train", help="module to run (default digpt_torch.train)")
    ap.add_argument("--nnodes", type=int, default=1, help="nodes in all (default 1)")
    ap.add_argument("--node-rank", type=int, default=0, help="this node's index (default 0)")
    ap.add_argument("--master-addr", default="127.0.0.1", help="rank 0's host (default 127.0.0.1)")
    ap.add_argument("--master-port", type=int, default=0, help="rank 0's port (default: a free one; set it when "
                                                               "--nnodes > 1)")
    ap.add_argument("--grace", type=float, default=5.0,
                    help="seconds the other ranks get after one fails before SIGKILL (default 5)")
    ap.add_argument("--exit-grace", type=float, default=60.0,
                    help="seconds a rank may still run after another exited 0 before SIGKILL (default 60)")
    a = ap.parse_args(own)
    if a.nproc < 1 or a.nnodes < 1 or not (0 <= a.node_rank < a.nnodes):
        ap.error("--nproc and --nnodes must be >= 1 and 0 <= --node-rank < --nnodes")
    if a.nnodes > 1 and a.master_port == 0:
        ap.error("--master-port is needed when --nnodes > 1 (every node must use the same one)")
    port = a.master_port or free_port()
    world = a.nproc * a.nnodes
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the folder holding digpt_torch/
    base = dict(os.environ)
    base["PYTHONPATH"] = here + (os.pathsep + base["PYTHONPATH"] if base.get("PYTHONPATH") else "")
    base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // a.nproc)))
    # the BLAS behind torch (OpenBLAS, MKL) keeps its own thread pool: the same share per rank
    base.setdefault("OPENBLAS_NUM_THREADS", base["OMP_NUM_THREADS"])
    base.setdefault("MKL_NUM_THREADS", base["OMP_NUM_THREADS"])
    base.update(MASTER_ADDR=a.master_addr, MASTER_PORT=str(port), WORLD_SIZE=str(world),
                LOCAL_WORLD_SIZE=str(a.nproc), GROUP_RANK=str(a.node_rank))
    procs = []

    received = []

    def forward(signum, _frame):
        received.append(signum)
        stop_hard = signum != signal.SIGUSR1 and sum(s != signal.SIGUSR1 for s in received) > 1
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGKILL if stop_hard else signum)
                except OSError:
                    pass

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, forward)
    try:
        for lr in range(a.nproc):
            env = dict(base, RANK=str(a.node_rank * a.nproc + lr), LOCAL_RANK=str(lr))
            p = subprocess.Popen([sys.executable, "-m", a.module] + rest, env=env, preexec_fn=_child_setup)
            procs.append(p)
            print(f"launch: rank {a.node_rank * a.nproc + lr} pid {p.pid}", file=sys.stderr, flush=True)
        first_done = None
        while True:
            codes = [p.poll() for p in procs]
            failed = [(r, c) for r, c in enumerate(codes) if c not in (None, 0)]
            if failed or all(c is not None for c in codes):
                break
            if first_done is None and any(c == 0 for c in codes):
                first_done = time.time()
            if first_done is not None and time.time() - first_done > a.exit_grace:
                # the ranks pass a last barrier before they exit, so a rank still running this long after another
                # finished is stuck in its teardown (torch 1.13 + gloo can deadlock there)
                late = [r for r, c in enumerate(codes) if c is None]
                for r in late:
                    procs[r].kill()
                    procs[r].wait()
                print(f"launch: rank(s) {', '.join(str(a.node_rank * a.nproc + r) for r in late)} still ran "
                      f"{a.exit_grace:g} s after another rank finished; killed", file=sys.stderr, flush=True)
                return 0 if codes[0] == 0 and a.node_rank == 0 else 1
            time.sleep(0.1)
        if not failed:
            return 0
        # a rank killed by a signal is the likelier cause (its peers then fail in their collectives)
        failed.sort(key=lambda rc: (rc[1] > 0, rc[0]))
        code = failed[0][1]
        how = "; ".join(f"rank {a.node_rank * a.nproc + r} " +
                        (f"was killed by signal {-c}" if c < 0 else f"exited with status {c}") for r, c in failed)
        print(f"launch: {how}; stopping the other ranks", file=sys.stderr, flush=True)
        for p in procs:
            if p.poll() is None:
                try:
                    p.send_signal(signal.SIGTERM)
                except OSError:
                    pass
        deadline = time.time() + a.grace
        while time.time() < deadline and any(p.poll() is None for p in procs):
            time.sleep(0.1)
        for p in procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass
        for p in procs:
            p.wait()
        return _status(code)
    finally:
        for p in procs:
            if p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass


if __name__ == "__main__":
    sys.exit(main())
