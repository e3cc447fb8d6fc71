"""The trainer: continues (or starts) a workbench pretraining run from a scale-out bundle, on 1 to N ranks.

    python3 -m digpt_torch.train --bundle DIR [--run RUN_DIR] [--steps S] [--data-root PATH]
        [--device auto|cpu|cuda] [--verify-data sha256|size] [--optimizer-version 2|1] [--log-every N]

- Reads RUN/config.json (RUN defaults to DIR/run; a RUN without config.json is first filled with a copy of
  DIR/run), its `scaleout` block (teacher_file, dataset, precision, tf32; paths relative to DIR), the teacher,
  dataset.json (every file's size and sha256 checked) and, when the run has one, its newest verified checkpoint
  (model.safetensors, optimizer.safetensors version 1 or 2, state.json). Lines of metrics.jsonl and
  patch-order.jsonl after that checkpoint's step are dropped first, so a run killed at any moment never logs a
  step twice. A run with history but no usable checkpoint is refused, as the workbench refuses it.
- Several ranks when WORLD_SIZE > 1 (RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT; from torchrun or
  `python3 -m digpt_torch.launch`): DDP over gloo on CPU, nccl on CUDA. fp32, TF32 off unless the scaleout block
  says `"tf32": true`; `"precision": "bf16"` runs the student under bfloat16 autocast (untested here).
- The data are drawn as the workbench draws them: each step draws `accum` global micro-batches of config.batch
  images (index, crop, cluster order) from the run's Rng; rank r of W keeps its contiguous slice (the first
  batch % W ranks one image more). Each rank's loss is weighted by its share of the micro-batch, so the gradient
  and the logged loss are the mean over the global micro-batch, as the workbench computes them; `no_sync` on all but
  the last micro-batch under DDP. lr = the workbench's schedule per step (warm-up, cosine), AdamW as the spec.
- Rank 0 alone writes: RUN/.lock (the workbench's lock), metrics.jsonl (one line per step, the workbench's
  format), patch-order.jsonl (up to 8 samples of the step's last micro-batch), checkpoints every
  checkpoint_every steps and at the end (RUN/checkpoints/step-XXXXXXXX, assembled in a temporary folder, manifest
  last, renamed), and an engine event line when the run changes engine (or world size). Only rank 0 needs the run
  folder: the other ranks get the weights, the optimizer moments and the data stream's state from it by broadcast.
- A NaN/inf loss (or teacher output) stops the run before the update, naming the step and the last good
  checkpoint, with exit status 3; no checkpoint of the broken state is written.
- SIGTERM, SIGUSR1 and SIGINT only set a flag; the ranks agree on it at the end of the step under way (it rides
  on the step's metrics all-reduce), write a checkpoint of that step and exit with status 0 (a second SIGINT
  interrupts at once). Exit statuses: 0 done or stopped with a checkpoint, 2 bad input (config, bundle, dataset,
  checkpoint, lock), 3 non-finite loss or state.
"""
import argparse
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import sys
import time

import numpy as np

from . import checkpoint as ck
from . import data as D
from . import metrics as M

__all__ = ["main", "TrainError"]

PATCH_SAMPLES = 8
# patch-order.jsonl carries the samples' crops (for the app's view) on every this many steps
PATCH_IMAGES_EVERY = 10
_KEEP = []


class TrainError(Exception):
    """A problem with the input (exit status 2) or a non-finite loss/state (status 3), with a message for the user."""

    def __init__(self, message, status=2):
        super().__init__(message)
        self.status = status


def _nonfinite_name(v):
    return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")


def log(msg):
    print(f"digpt_torch: {msg}", file=sys.stderr, flush=True)


# --- distributed helpers ---


class Dist:
    """The process group (or a stand-in for one rank)."""

    def __init__(self, device_kind):
        import torch

        self.torch = torch
        env = os.environ
        if "RANK" not in env and int(env.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in env:
            # one task per GPU started by srun (launch/slurm.sbatch): Slurm's numbering is the process group's
            env["RANK"], env["WORLD_SIZE"] = env["SLURM_PROCID"], env["SLURM_NTASKS"]
            env["LOCAL_RANK"] = env.get("SLURM_LOCALID", "0")
        self.world = int(env.get("WORLD_SIZE", "1"))
        self.rank = int(env.get("RANK", "0"))
        self.local_rank = int(env.get("LOCAL_RANK", "0"))
        if self.world > 1 and ("MASTER_ADDR" not in env or "MASTER_PORT" not in env):
            raise TrainError(f"WORLD_SIZE is {self.world} but MASTER_ADDR/MASTER_PORT are not set; start the ranks "
                             "with torchrun, python3 -m digpt_torch.launch or the bundle's launch files")
        if device_kind == "auto":
            device_kind = "cuda" if torch.cuda.is_available() else "cpu"
        if device_kind == "cuda":
            if not torch.cuda.is_available():
                raise TrainError("--device cuda: no CUDA device is visible to this process")
            torch.cuda.set_device(self.local_rank % torch.cuda.device_count())
            self.device = torch.device("cuda", torch.cuda.current_device())
        else:
            self.device = torch.device("cpu")
        self.backend = "nccl" if self.device.type == "cuda" else "gloo"
        self.on = self.world > 1
        if self.on:
            import datetime

            import torch.distributed as dist

            self.dist = dist
            timeout = datetime.timedelta(seconds=float(os.environ.get("DIGPT_DIST_TIMEOUT", "1800")))
            dist.init_process_group(self.backend, init_method="env://", world_size=self.world, rank=self.rank,
                                    timeout=timeout)

    def all_sum(self, values):
        """Sums a float64 vector over the ranks."""
        t = self.torch.tensor(values, dtype=self.torch.float64, device=self.device)
        if self.on:
            self.dist.all_reduce(t)
        return t.cpu().tolist()

    def broadcast_json(self, obj):
        """Rank 0's JSON-able object on every rank."""
        if not self.on:
            return obj
        torch = self.torch
        if self.rank == 0:
            raw = json.dumps(obj).encode("utf-8")
            n = torch.tensor([len(raw)], dtype=torch.int64, device=self.device)
        else:
            n = torch.zeros(1, dtype=torch.int64, device=self.device)
        self.dist.broadcast(n, 0)
        if self.rank == 0:
            buf = torch.frombuffer(bytearray(raw), dtype=torch.uint8).to(self.device)
        else:
            buf = torch.zeros(int(n.item()), dtype=torch.uint8, device=self.device)
        self.dist.broadcast(buf, 0)
        return json.loads(bytes(buf.cpu().numpy().tobytes()).decode("utf-8"))

    def broadcast_(self, t):
        if self.on:
            self.dist.broadcast(t, 0)

    def all_gather_rows(self, rows, cap, width):
        """Every rank's rows ([n <= cap, width] float32, padded) -> a list per rank of [cap, width] arrays."""
        torch = self.torch
        t = torch.zeros(cap, width, dtype=torch.float32, device=self.device)
        if rows is not None and rows.shape[0]:
            t[: rows.shape[0]] = rows.to(device=self.device, dtype=torch.float32).reshape(rows.shape[0], width)
        if not self.on:
            return [t.cpu().numpy()]
        out = [torch.zeros_like(t) for _ in range(self.world)]
        self.dist.all_gather(out, t)
        return [o.cpu().numpy() for o in out]

    def barrier(self):
        if self.on:
            self.dist.barrier()

    def close(self):
        if self.on:
            try:
                self.dist.destroy_process_group()
            except Exception:
                pass


# --- signals ---


class StopFlag:
    """SIGTERM / SIGUSR1 / SIGINT set it; nothing else happens in the handler."""

    def __init__(self):
        self.signal = None
        self._ints = 0

    def install(self):
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGUSR1, self._set)
        signal.signal(signal.SIGINT, self._int)

    def _set(self, signum, _frame):
        if self.signal is None:
            self.signal = signum

    def _int(self, signum, frame):
        self._ints += 1
        if self._ints > 1:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._set(signum, frame)

    @property
    def set(self):
        return self.signal is not None

    def name(self):
        return signal.Signals(self.signal).name if self.signal is not None else None


# --- the bundle ---


def _read_json(path, what):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise TrainError(f"{path}: no such file ({what})") from None
    except ValueError as e:
        raise TrainError(f"{path}: not valid JSON ({e})") from None


def read_config(run_dir):
    p = os.path.join(run_dir, "config.json")
    cfg = _read_json(p, "the run's config.json")
    if not isinstance(cfg, dict):
        raise TrainError(f"{p}: not a JSON object")
    if cfg.get("kind") != "pretrain":
        raise TrainError(f"{p}: a {cfg.get('kind')!r} run; this trainer continues pretraining runs only")
    for k, typ in (("model", dict), ("objective", str), ("steps", int), ("batch", int), ("seed", int),
                   ("blr", (int, float)), ("checkpoint_every", int)):
        if not isinstance(cfg.get(k), typ) or isinstance(cfg.get(k), bool):
            raise TrainError(f"{p}: {k} is missing or not a {getattr(typ, '__name__', 'number')}")
    for k in ("steps", "batch", "checkpoint_every"):
        if cfg[k] < 1:
            raise TrainError(f"{p}: {k} must be >= 1, got {cfg[k]}")
    cfg.setdefault("accum", 1)
    cfg.setdefault("min_lr", 0)
    cfg.setdefault("warmup_steps", 0)
    cfg.setdefault("weight_decay", 0.05)
    if not isinstance(cfg["accum"], int) or cfg["accum"] < 1:
        raise TrainError(f"{p}: accum must be an integer >= 1")
    return cfg


def prepare_run_dir(bundle, run_dir):
    """A --run folder without config.json gets a copy of the bundle's run (config, metrics, checkpoints)."""
    if os.path.exists(os.path.join(run_dir, "config.json")):
        return
    src = os.path.join(bundle, "run")
    if os.path.abspath(src) == os.path.abspath(run_dir) or not os.path.exists(os.path.join(src, "config.json")):
        raise TrainError(f"{run_dir}: no config.json, and {src} has none to start from; is {bundle} a bundle?")
    tmp = run_dir.rstrip("/") + f".tmp-{os.getpid()}"
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns(".lock", ".lock.*", ".tmp-*"))
    os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)
    if os.path.exists(run_dir):
        if os.listdir(run_dir):
            shutil.rmtree(tmp, ignore_errors=True)
            raise TrainError(f"{run_dir}: exists, is not empty and holds no config.json; not a run folder")
        os.rmdir(run_dir)
    os.rename(tmp, run_dir)
    log(f"copied {src} to {run_dir}")


def bundle_paths(bundle, cfg, run_dir):
    so = cfg.get("scaleout") or {}
    if not isinstance(so, dict):
        raise TrainError(f"{os.path.join(run_dir, 'config.json')}: scaleout must be an object")
    ds = so.get("dataset", "dataset.json")
    ds_path = ds if os.path.isabs(ds) else os.path.join(bundle, ds)
    teacher = cfg.get("teacher", "pixels")
    tf = so.get("teacher_file")
    if teacher == "pixels" and not tf:
        tspec = "pixels"
    else:
        if not tf:
            raise TrainError(f"{os.path.join(run_dir, 'config.json')}: the teacher is {teacher!r} but the scaleout "
                             "block names no teacher_file (the bundle holds the resolved teacher as safetensors)")
        tspec = tf if os.path.isabs(tf) else os.path.join(bundle, tf)
        if not os.path.isfile(tspec):
            raise TrainError(f"{tspec}: no such file (the run's teacher, scaleout.teacher_file)")
    return so, ds_path, tspec


# --- the run ---


class Trainer:
    def __init__(self, args, dist, stop):
        import torch

        self.torch = torch
        self.a = args
        self.d = dist
        self.stop = stop
        self.lock = None

    # -- setup --

    def setup(self):
        torch = self.torch
        a, d = self.a, self.d
        bundle = os.path.abspath(a.bundle)
        run_dir = os.path.abspath(a.run or os.path.join(bundle, "run"))
        self.bundle, self.run_dir = bundle, run_dir
        # rank 0 prepares the folder; every rank then reads the same config
        status = None
        if d.rank == 0:
            try:
                prepare_run_dir(bundle, run_dir)
                cfg = read_config(run_dir)
                status = {"ok": True, "config": cfg}
            except TrainError as e:
                status = {"ok": False, "error": str(e), "status": e.status}
        status = d.broadcast_json(status)
        if not status["ok"]:
            raise TrainError(status["error"] if d.rank == 0 else "rank 0 refused the run (see its message)",
                             status["status"])
        cfg = self.cfg = status["config"]
        so, ds_path, tspec = bundle_paths(bundle, cfg, run_dir)
        self.so = so
        precision = so.get("precision", "fp32")
        if precision not in ("fp32", "bf16"):
            raise TrainError(f"{run_dir}/config.json: scaleout.precision {precision!r}: use fp32 or bf16")
        self.precision = precision
        if precision == "bf16" and d.device.type != "cuda":
            raise TrainError(f"{run_dir}/config.json: scaleout.precision bf16 needs a CUDA device (torch's CPU autocast "
                             "does not cover this model's layer norms); use fp32 on the CPU")
        tf32 = bool(so.get("tf32", False))
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
        B, W = cfg["batch"], d.world
        if B < W:
            raise TrainError(f"config.json batch {B} is smaller than the world size {W}: every rank needs images")
        if so.get("world_size") not in (None, W) and d.rank == 0:
            log(f"note: the bundle was made for {so.get('world_size')} ranks, this launch has {W}; the data order, "
                "the batch and the losses do not depend on it")
        self.lo, self.hi = D.shard_bounds(B, W, d.rank)

        # the dataset: each node's first rank checks the files, then every rank reads them
        problem = None
        try:
            manifest = D.load_manifest(ds_path, a.data_root)
            if d.local_rank == 0:
                D.verify_files(manifest, hashes=(a.verify_data == "sha256"))
        except D.DatasetError as e:
            problem = str(e)
        bad = d.all_sum([1.0 if problem else 0.0])[0]
        if problem:
            raise TrainError(problem)
        if bad:
            raise TrainError("another rank refused the dataset (see its message)")
        self.manifest = manifest
        side = D.cache_side_for(int(cfg["model"]["img_size"]))
        t0 = time.time()
        try:
            self.images = D.load_images(manifest, side)
        except D.DatasetError as e:
            raise TrainError(str(e)) from None
        if d.rank == 0:
            log(f"dataset {manifest.root}: {self.images.count} images at {side} px ({time.time() - t0:.1f} s)")

        # model, teacher, optimizer
        from .model import build_pretrain
        from .optim import make_adamw
        from .teacher import load_teacher

        try:
            self.teacher = load_teacher(tspec, cfg["model"]).to(d.device)
            torch.manual_seed(int(cfg["seed"]))
            self.model = build_pretrain(cfg["model"], cfg["objective"], seed=int(cfg["seed"])).to(d.device)
        except (ValueError, OSError) as e:
            raise TrainError(f"{e}") from None
        self.k = int(getattr(self.model, "order_length", D.order_length(cfg["model"], cfg["objective"])))
        self.opt = make_adamw(self.model, cfg)
        self.stream = D.DataStream(self.images.count, int(cfg["seed"]) + 1)
        self.resume()
        if d.on:
            from torch.nn.parallel import DistributedDataParallel as DDP

            kw = {"device_ids": [d.device.index]} if d.device.type == "cuda" else {}
            self.net = DDP(self.model, broadcast_buffers=False, **kw)
        else:
            self.net = self.model

    def resume(self):
        """Rank 0 finds where the run continues (lock, leftovers, newest verified checkpoint, cut-back of the
        logs) and loads it; the other ranks receive the weights, moments and stream state by broadcast."""
        torch, d = self.torch, self.d
        info = None
        if d.rank == 0:
            try:
                info = self._resume_rank0()
            except TrainError as e:
                info = {"ok": False, "error": str(e), "status": e.status}
        info = d.broadcast_json(info)
        if not info["ok"]:
            raise TrainError(info["error"] if d.rank == 0 else "rank 0 refused the run (see its message)",
                             info["status"])
        if d.rank != 0:
            self.stream.restore(info["state"])
        if d.on:
            for p in self.model.parameters():
                d.broadcast_(p.data)
            if info["opt_step"] is not None:
                for p in self.model.parameters():
                    st = self.opt.state[p]
                    if d.rank != 0:
                        st["step"] = torch.tensor(float(info["opt_step"]))
                        st["exp_avg"] = torch.zeros_like(p.data)
                        st["exp_avg_sq"] = torch.zeros_like(p.data)
                    d.broadcast_(st["exp_avg"])
                    d.broadcast_(st["exp_avg_sq"])
        self.start_step = self.stream.step
        self.resumed_from = info.get("folder")

    def _resume_rank0(self):
        from .model import load_workbench_state
        from .optim import load_optimizer_from_workbench

        run = self.run_dir
        try:
            self.lock = ck.RunLock.acquire(run, command="digpt_torch.train " + " ".join(sys.argv[1:]), warn=log)
        except ck.RunLockedError as e:
            raise TrainError(str(e)) from None
        try:
            point = ck.resume_point(run, log)
        except ck.NothingToResumeError as e:
            raise TrainError(str(e)) from None
        opt_step = None
        folder = None
        if point:
            folder, manifest = point
            try:
                load_workbench_state(self.model, os.path.join(folder, "model.safetensors"))
                state = ck.load_stream_state(folder)
                self.stream.restore(state, os.path.join(folder, "state.json"))
                opt_path = os.path.join(folder, "optimizer.safetensors")
                if os.path.exists(opt_path):
                    opt_step = load_optimizer_from_workbench(self.opt, self.model, opt_path)
                else:
                    raise TrainError(f"{opt_path}: missing; a run continues from its optimizer state (sync the "
                                     "checkpoint's optimizer.safetensors too)")
            except TrainError:
                raise
            except Exception as e:
                raise TrainError(f"{folder}: {e}") from None
            if self.stream.step != manifest["step"]:
                raise TrainError(f"{folder}: state.json says step {self.stream.step}, manifest.json {manifest['step']}")
            log(f"continuing {run} from {folder} (step {self.stream.step})")
        else:
            log(f"starting {run} at step 0 (no checkpoint)")
        step = self.stream.step
        mp, pp = M.metrics_path(run), M.patch_order_path(run)
        kept, dropped = M.truncate_after(mp, step)
        if dropped:
            log(f"dropped {dropped} line(s) of {mp} after step {step} (they are computed again)")
        M.truncate_after(pp, step)
        recs = M.read_records(mp)
        last = M.last_engine(recs)
        if last is None or last.get("engine") != M.ENGINE or last.get("world_size") != self.d.world:
            M.append_record(mp, M.engine_event(step, self.d.world))
        if not os.path.exists(mp):
            open(mp, "a").close()
        return {"ok": True, "state": self.stream.snapshot(), "opt_step": opt_step, "folder": folder}

    # -- the loop --

    def views(self, mb):
        """This rank's student and teacher inputs of a micro-batch, normalised as the workbench writes them."""
        torch = self.torch
        cfg, t = self.cfg, self.teacher
        S = int(cfg["model"]["img_size"])
        x = torch.from_numpy(mb.views(self.images, self.lo, self.hi, S, D.IMAGENET_MEAN, D.IMAGENET_STD))
        same = t.resolution == S and tuple(t.mean) == tuple(D.IMAGENET_MEAN) and tuple(t.std) == tuple(D.IMAGENET_STD)
        tx = x if same else torch.from_numpy(mb.views(self.images, self.lo, self.hi, t.resolution, t.mean, t.std))
        order = torch.from_numpy(np.ascontiguousarray(mb.orders[self.lo:self.hi]))
        return x.to(self.d.device), tx.to(self.d.device), order.to(self.d.device)

    def run(self):
        torch, d, cfg = self.torch, self.d, self.cfg
        from .optim import lr_at, optimizer_step

        total = int(cfg["steps"])
        end = total if self.a.steps is None else min(total, int(self.a.steps))
        if self.a.steps is not None and self.a.steps > total and d.rank == 0:
            log(f"--steps {self.a.steps} is past the run's {total} steps (config.json); stopping at {total}")
        B, W, accum = int(cfg["batch"]), d.world, int(cfg["accum"])
        share = (self.hi - self.lo) / B
        scale = share * W / accum
        side = self.images.side
        objective = cfg["objective"]
        cap = max(1, min(PATCH_SAMPLES, -(-B // W)))  # rows each rank sends for the patch-order line
        if d.rank == 0:
            log(f"run {self.run_dir}: steps {self.stream.step} -> {end} of {total}, {W} rank(s) on {d.device.type}"
                f" ({d.backend if d.on else 'single process'}), batch {B} (this rank {self.hi - self.lo}) x accum "
                f"{accum}, {self.precision}")
        self.model.train()
        amp = (torch.autocast(device_type=d.device.type, dtype=torch.bfloat16) if self.precision == "bf16"
               else contextlib.nullcontext())
        last_ck = self.resumed_from
        stopped = None
        while self.stream.step < end:
            t0 = time.perf_counter()
            step = self.stream.step + 1
            micro = [D.draw_micro_batch(self.stream, side, B, self.k) for _ in range(accum)]
            lr = lr_at(step, cfg, steps_total=total, effective_batch_size=B * accum)
            sums = [0.0, 0.0, 0.0, 0.0]
            teacher_bad = 0.0
            cerr_rows = None
            for i, mb in enumerate(micro):
                x, tx, order = self.views(mb)
                with torch.no_grad():
                    targets = self.teacher.tokens_from_normalized(tx)
                if not bool(torch.isfinite(targets).all()):
                    teacher_bad = 1.0
                sync = contextlib.nullcontext() if (not d.on or i == accum - 1) else self.net.no_sync()
                with sync:
                    with amp:
                        out = self.net(x, order, targets, normalized=True)
                    (out["loss"].float() * scale).backward()
                vals = [out["loss"], out.get("loss_gen"), out.get("loss_dis"), out["agreement"]]
                for j, v in enumerate(vals):
                    if v is not None:
                        sums[j] += float(v.detach().float().item()) * share
                if i == accum - 1:
                    ce = out.get("cluster_error")
                    cerr_rows = None if ce is None else ce.detach().float().reshape(ce.shape[0], -1)
            red = d.all_sum(sums + [teacher_bad, 1.0 if self.stop.set else 0.0])
            loss, loss_gen, loss_dis, agreement = (v / accum for v in red[:4])
            if red[4] > 0:
                raise TrainError(
                    f"teacher {getattr(self.teacher, 'spec', 'teacher')} gave non-finite outputs (Inf or NaN) at step {step}; check that "
                    f"file (its weights may hold Inf or NaN); the run stopped and kept "
                    f"{self._kept(last_ck)}", 3)
            if not math.isfinite(loss):
                raise TrainError(f"loss became {_nonfinite_name(loss)} at step {step}; the run stopped and kept "
                                 f"{self._kept(last_ck)}", 3)
            optimizer_step(self.opt, lr)
            self.opt.zero_grad(set_to_none=True)
            self.stream.end_step()
            # patch order: the first samples of the last micro-batch (their errors live on the first ranks)
            width = 0 if cerr_rows is None else int(cerr_rows.shape[1])
            rows = None
            if width:
                mine = cerr_rows[:cap]
                parts = d.all_gather_rows(mine, cap, width)
                rows = []
                for r in range(W):
                    lo, hi = D.shard_bounds(B, W, r)
                    rows.extend(parts[r][: min(cap, hi - lo)].tolist())
                rows = rows[: min(PATCH_SAMPLES, B)]
            if d.device.type == "cuda":
                torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            stop_now = red[5] > 0
            if d.rank == 0:
                rec = M.step_record(step, objective, loss, loss_gen, loss_dis, lr, agreement,
                                    B * accum / dt if dt > 0 else 0.0, self.stream.epoch)
                M.append_record(M.metrics_path(self.run_dir), rec)
                n = len(rows) if rows is not None else min(PATCH_SAMPLES, B)
                order_rows = micro[-1].orders[:n].tolist()
                # the crops themselves every PATCH_IMAGES_EVERY steps (33 KB a line at 32 px), and at the end
                samples = None
                if step % PATCH_IMAGES_EVERY == 0 or step == end or stop_now:
                    S = int(cfg["model"]["img_size"])
                    crops = micro[-1].views(self.images, 0, n, S).transpose(0, 2, 3, 1)
                    samples = np.clip(np.rint(crops * 255.0), 0, 255).astype(np.uint8)
                M.append_record(M.patch_order_path(self.run_dir),
                                M.patch_order_record(step, order_rows, rows if rows is not None else [[] for _ in
                                                                                                      range(n)],
                                                     samples))
                if self.a.log_every and (step % self.a.log_every == 0 or step == end or stop_now):
                    extra = (f" gen {loss_gen:.4f}" if "loss_gen" in rec else "") + \
                        (f" dis {loss_dis:.4f}" if "loss_dis" in rec else "")
                    log(f"step {step}/{end} loss {loss:.4f}{extra} lr {lr:.3g} {B * accum / dt:.1f} img/s")
            if step % int(cfg["checkpoint_every"]) == 0 or step == end or stop_now:
                if d.rank == 0:
                    last_ck = self.save(last_ck)
                    log(f"checkpoint {last_ck}")
            if stop_now:
                stopped = self.stop.name() or "a signal on another rank"
                break
        d.barrier()
        if d.rank == 0:
            if stopped:
                log(f"stopped by {stopped} at step {self.stream.step}: checkpoint {last_ck}; run the same command to "
                    "continue")
            else:
                log(f"finished at step {self.stream.step}" + (f" of {total}" if self.stream.step < total else ""))
        return 0

    def _kept(self, last):
        if last:
            return f"its last good checkpoint {last}"
        good, _ = ck.scan_checkpoints(os.path.join(self.run_dir, "checkpoints"))
        return f"its last good checkpoint {good[0]}" if good else "no checkpoint (none was written yet)"

    def save(self, last_good):
        """Rank 0: checks that weights and moments are finite, then writes the checkpoint of the current step."""
        from .model import save_workbench_state
        from .optim import save_optimizer

        torch = self.torch
        step = self.stream.step
        for what, named in (("weight", self.model.named_parameters()),):
            for name, p in named:
                if not bool(torch.isfinite(p.data).all()):
                    raise TrainError(self._nonfinite_msg(step, f"{what} {name}", last_good), 3)
        for name, p in self.model.named_parameters():
            st = self.opt.state.get(p, {})
            for key, label in (("exp_avg", "AdamW first moment (m) of"), ("exp_avg_sq", "AdamW second moment (v) of")):
                if key in st and not bool(torch.isfinite(st[key]).all()):
                    raise TrainError(self._nonfinite_msg(step, f"{label} {name}", last_good), 3)
        state = self.stream.snapshot()
        M.fsync_file(M.metrics_path(self.run_dir))
        M.fsync_file(M.patch_order_path(self.run_dir))
        model_meta = {"config": M.js_json(self.cfg["model"])}

        def write(folder):
            save_workbench_state(self.model, os.path.join(folder, "model.safetensors"), model_meta)
            save_optimizer(self.opt, self.model, os.path.join(folder, "optimizer.safetensors"),
                           version=int(self.a.optimizer_version))
            ck.save_stream_state(folder, state)

        return ck.write_checkpoint(os.path.join(self.run_dir, "checkpoints"), step, write)

    def _nonfinite_msg(self, step, what, last_good):
        return (f"step {step}: {what} holds non-finite values; no checkpoint of step {step} was written and the run "
                f"stopped, keeping {self._kept(last_good)} (a lower blr, or a longer warm-up, usually avoids it)")

    def close(self):
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="python3 -m digpt_torch.train",
                                 description="continue a workbench pretraining run from a scale-out bundle")
    ap.add_argument("--bundle", required=True, metavar="DIR", help="the bundle folder (digpt scaleout --out)")
    ap.add_argument("--run", metavar="RUN_DIR", help="the run folder (default DIR/run; one without config.json "
                                                     "gets a copy of DIR/run)")
    ap.add_argument("--steps", type=int, metavar="S", help="stop after this global step (default: the run's steps)")
    ap.add_argument("--data-root", metavar="PATH", help="the dataset folder (default $DIGPT_DATA_ROOT, else the "
                                                        "manifest's root)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                    help="auto: CUDA when there is one (rank r on GPU LOCAL_RANK), else the CPU")
    ap.add_argument("--verify-data", choices=("sha256", "size"), default="sha256",
                    help="check the dataset files' sha256 (default) or only their sizes")
    ap.add_argument("--optimizer-version", choices=("1", "2"), default="2",
                    help="optimizer.safetensors layout written: 2 PyTorch shapes (default), 1 the workbench's flat")
    ap.add_argument("--log-every", type=int, default=1, metavar="N", help="a progress line every N steps (0: none)")
    ap.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default $OMP_NUM_THREADS or torch's)")
    return ap.parse_args(argv)


def main(argv=None):
    a = parse_args(sys.argv[1:] if argv is None else argv)
    stop = StopFlag()
    stop.install()
    import torch

    n = a.threads or (int(os.environ["OMP_NUM_THREADS"]) if os.environ.get("OMP_NUM_THREADS", "").isdigit() else 0)
    if n > 0:
        torch.set_num_threads(n)
    d = None
    tr = None
    try:
        d = Dist(a.device)
        tr = Trainer(a, d, stop)
        tr.setup()
        return tr.run()
    except TrainError as e:
        if d is None or d.rank == 0 or "another rank" not in str(e) and "rank 0 refused" not in str(e):
            prefix = f"rank {d.rank}: " if d is not None and d.on and d.rank != 0 else ""
            log(f"error: {prefix}{e}")
        return e.status
    finally:
        if tr is not None:
            tr.close()
        # the model, DDP and the process group stay referenced: freeing DDP's reducer with the GIL held can deadlock
        # in torch 1.13's gloo teardown (its worker thread waits for the GIL to free a tensor); _run_and_exit leaves
        # with os._exit, and an in-process caller may call _KEEP.clear() and dist.close() itself
        _KEEP.extend([tr, d])


def _run_and_exit():
    """main(), then os._exit: with torch 1.13 and gloo, tearing DDP down at interpreter exit can deadlock (the
    process group's destructor joins a worker thread that waits for the GIL), so nothing is left to destructors:
    every file is written and closed, the lock let go and the logs flushed before this point."""
    code = 1
    try:
        code = main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


if __name__ == "__main__":
    _run_and_exit()
