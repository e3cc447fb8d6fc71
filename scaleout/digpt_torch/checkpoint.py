"""Checkpoint folders and the run's lock, in the workbench's format (app/runs/checkpoint.ts, app/worker/run-files.ts,
app/runs/lock.ts).

A checkpoint is RUN/checkpoints/step-XXXXXXXX/ holding model.safetensors, optimizer.safetensors, state.json and
manifest.json. `write_checkpoint` assembles it in RUN/checkpoints/.tmp-step-XXXXXXXX-PID-MS/ (the workbench's name
for the temporary folder: neither engine lists it as a checkpoint, and either removes it as a leftover), fsyncs
every file, writes manifest.json last ({format, version, step, created, files: {name: {bytes, sha256}}}, indented
by one space as JSON.stringify(m, null, 1)), fsyncs the folder and renames it into place. A crash at any moment
leaves the older checkpoints alone or the new one whole. Only rank 0 calls it.

`scan_checkpoints` finds the newest checkpoint that verifies (every file present with its size and sha256, and
every float tensor of its safetensors files finite), naming why each newer one was rejected; `resume_point` is the
workbench's resumePoint (leftover temporary folders removed; a run with history but no usable checkpoint refused).

`RunLock` is RUN/.lock as the workbench writes it (pid, host, started, command, thread, token), so the workbench
refuses to write a run this trainer is writing and the other way round. A lock left by a dead process of this host
is taken over; one of another host is taken over only by the same Slurm job (a requeued job keeps its
SLURM_JOB_ID, recorded in the lock as `slurm_job_id`), else refused naming it (delete it if that process is gone).
"""
import json
import os
import secrets
import shutil
import socket
import sys
import time

import numpy as np

from .files import fsync_dir as _fsync_dir, fsync_file as _fsync_file, sha256 as _sha256
from .metrics import iso_now, js_json, last_logged_step, metrics_path, read_records

__all__ = [
    "PREFIX",
    "TMP_PREFIX",
    "checkpoint_name",
    "write_checkpoint",
    "verify_checkpoint",
    "list_checkpoints",
    "scan_checkpoints",
    "remove_tmp_checkpoints",
    "non_finite_in",
    "resume_point",
    "NothingToResumeError",
    "save_stream_state",
    "load_stream_state",
    "RunLock",
    "RunLockedError",
]

PREFIX = "step-"
TMP_PREFIX = ".tmp-" + PREFIX


def checkpoint_name(step):
    return f"{PREFIX}{int(step):08d}"





def write_checkpoint(ck_dir, step, write):
    """Writes checkpoint `step` into ck_dir/step-XXXXXXXX/: `write(tmp_folder)` puts the files, then the manifest
    goes in last and the folder is renamed into place. Returns the final folder. A failure removes the temporary one."""
    final = os.path.join(ck_dir, checkpoint_name(step))
    tmp = os.path.join(ck_dir, f"{TMP_PREFIX}{int(step):08d}-{os.getpid()}-{int(time.time() * 1000)}")
    os.makedirs(ck_dir, exist_ok=True)
    os.mkdir(tmp)
    try:
        write(tmp)
        files = {}
        for name in sorted(os.listdir(tmp)):
            p = os.path.join(tmp, name)
            _fsync_file(p)
            files[name] = {"bytes": os.stat(p).st_size, "sha256": _sha256(p)}
        manifest = {"format": "digpt-workbench-checkpoint", "version": 1, "step": int(step), "created": iso_now(),
                    "files": files}
        mpath = os.path.join(tmp, "manifest.json")
        with open(mpath, "w", encoding="utf-8") as f:
            f.write(json.dumps(manifest, indent=1, ensure_ascii=False))
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        if os.path.exists(final):
            shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _fsync_dir(ck_dir)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def non_finite_in(path):
    """The first non-finite value of the float tensors of a safetensors file, as a reason naming the file and
    tensor; None when all are finite."""
    from .safetensors_io import SafetensorsFile

    with SafetensorsFile(path) as f:
        for k in f.keys():
            if f.dtype(k) not in ("F32", "F16", "BF16", "F64"):
                continue
            x = f.get(k).reshape(-1)
            bad = ~np.isfinite(x)
            if bad.any():
                i = int(np.argmax(bad))
                v = x[i]
                vs = "NaN" if np.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
                return f"{path}: {k} holds non-finite values ({vs} at index {i})"
    return None


def verify_checkpoint(folder, values=True):
    """(manifest, None) when the folder matches its manifest (and, with `values`, its tensors are finite); else
    (None, reason naming the file)."""
    mpath = os.path.join(folder, "manifest.json")
    if not os.path.exists(mpath):
        return None, f"{folder}: no manifest.json (incomplete write)"
    try:
        with open(mpath, "r", encoding="utf-8") as f:
            m = json.load(f)
    except (OSError, ValueError):
        return None, f"{mpath}: not valid JSON"
    if not isinstance(m, dict) or not isinstance(m.get("files"), dict) or not isinstance(m.get("step"), (int, float)) \
            or isinstance(m.get("step"), bool):
        return None, f"{mpath}: not a checkpoint manifest (no step or files)"
    for name, info in m["files"].items():
        p = os.path.join(folder, name)
        if not os.path.exists(p):
            return None, f"{p}: missing"
        if not isinstance(info, dict) or os.stat(p).st_size != info.get("bytes"):
            return None, f"{p}: size differs from the manifest"
        if _sha256(p) != info.get("sha256"):
            return None, f"{p}: checksum differs from the manifest"
    if values:
        for name in m["files"]:
            if not name.endswith(".safetensors"):
                continue
            try:
                why = non_finite_in(os.path.join(folder, name))
            except Exception as e:  # an unreadable file is a reason, not a crash
                why = str(e)
            if why:
                return None, why
    return m, None


def list_checkpoints(ck_dir):
    """Checkpoint folders, newest first (temporary folders are not listed)."""
    if not os.path.isdir(ck_dir):
        return []
    return [os.path.join(ck_dir, f) for f in sorted((f for f in os.listdir(ck_dir) if f.startswith(PREFIX)),
                                                    reverse=True)]


def scan_checkpoints(ck_dir, values=True):
    """(good, rejected): good is (folder, manifest) of the newest checkpoint that verifies, or None."""
    rejected = []
    for folder in list_checkpoints(ck_dir):
        m, why = verify_checkpoint(folder, values)
        if m is not None:
            return (folder, m), rejected
        rejected.append(why)
    return None, rejected


def remove_tmp_checkpoints(ck_dir):
    """Removes leftovers of interrupted checkpoint writes (.tmp-step-*); call only while holding the run's lock."""
    if not os.path.isdir(ck_dir):
        return []
    gone = [os.path.join(ck_dir, f) for f in os.listdir(ck_dir) if f.startswith(TMP_PREFIX)]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


class NothingToResumeError(Exception):
    """No checkpoint can be trusted while the run has a history that restarting would throw away."""


def resume_point(run_dir, warn):
    """Where a run continues: (folder, manifest) of its newest good checkpoint, or None for a run that never logged a
    step (it starts at step 0). Refuses (NothingToResumeError) a run with history and no usable checkpoint."""
    ck_dir = os.path.join(run_dir, "checkpoints")
    for p in remove_tmp_checkpoints(ck_dir):
        warn(f"removed {p}, the leftover of an interrupted checkpoint write")
    good, rejected = scan_checkpoints(ck_dir)
    for r in rejected:
        warn(f"checkpoint rejected: {r}")
    if good:
        return good
    steps = last_logged_step(read_records(metrics_path(run_dir)))
    if not rejected and steps == 0:
        return None
    why = (f"none of its {len(rejected)} checkpoint(s) is usable ({'; '.join(rejected)})" if rejected
           else "it has no checkpoint (it stopped before its first one)")
    kept = (f"{metrics_path(run_dir)} (steps up to {steps}) is kept as it was" if steps > 0
            else "nothing was changed")
    raise NothingToResumeError(
        f"cannot resume {run_dir}: {why}; {kept}. Start a new run, or remove {metrics_path(run_dir)} and {ck_dir} "
        "to train this one again from step 0")


def save_stream_state(folder, state):
    """state.json: JSON.stringify of {step, epoch, cursor, order, rng}."""
    with open(os.path.join(folder, "state.json"), "w", encoding="utf-8") as f:
        f.write(js_json(state))


def load_stream_state(folder):
    p = os.path.join(folder, "state.json")
    with open(p, "r", encoding="utf-8") as f:
        return json.load(f)


# --- the run's lock ---


class RunLockedError(Exception):
    pass


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except PermissionError:
        return True
    except OSError:
        return False


def _describe(h):
    cmd = f" ({h.get('command')})" if h.get("command") else ""
    return f"pid {h.get('pid')} on {h.get('host')} since {h.get('started')}{cmd}"


class RunLock:
    """RUN/.lock, held by this process until `release` (rank 0 takes it for the whole run)."""

    def __init__(self, run_dir, info, text):
        self.run_dir = run_dir
        self.info = info
        self.text = text
        self.held = True

    @property
    def path(self):
        return os.path.join(self.run_dir, ".lock")

    @staticmethod
    def _create(path, text):
        tmp = f"{path}.{os.getpid()}-0-{secrets.token_hex(4)}"
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        except OSError:
            try:  # filesystems without hard links
                with open(path, "x", encoding="utf-8") as f:
                    f.write(text)
                return True
            except FileExistsError:
                return False
        finally:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    @staticmethod
    def _remove_if_unchanged(path, text):
        aside = f"{path}.stale-{os.getpid()}-0-{secrets.token_hex(4)}"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return
        try:
            with open(aside, "r", encoding="utf-8") as f:
                now = f.read()
            if now != text:
                try:
                    os.link(aside, path)
                except OSError:
                    pass
        finally:
            try:
                os.unlink(aside)
            except OSError:
                pass

    @classmethod
    def acquire(cls, run_dir, command=None, warn=lambda s: None):
        if not os.path.isdir(run_dir):
            raise RunLockedError(f"{run_dir}: no such run folder")
        path = os.path.join(run_dir, ".lock")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": iso_now(),
                "command": command if command is not None else " ".join([sys.executable] + sys.argv),
                "thread": 0, "token": secrets.token_hex(8)}
        job = os.environ.get("SLURM_JOB_ID")
        if job:
            info["slurm_job_id"] = job
        text = json.dumps(info, indent=1) + "\n"
        for _ in range(5):
            if cls._create(path, text):
                return cls(run_dir, info, text)
            try:
                with open(path, "r", encoding="utf-8") as f:
                    seen = f.read()
            except FileNotFoundError:
                continue
            try:
                h = json.loads(seen)
                ok = isinstance(h, dict) and isinstance(h.get("pid"), int) and isinstance(h.get("host"), str)
            except ValueError:
                h, ok = None, False
            if not ok:
                if time.time() - os.stat(path).st_mtime < 5:
                    raise RunLockedError(f"run {run_dir} is being locked by another process right now ({path})")
                warn(f"took over the lock of run {run_dir}: {path} was not a readable lock ({len(seen)} bytes)")
                cls._remove_if_unchanged(path, seen)
                continue
            same_job = job is not None and h.get("slurm_job_id") == job
            if h["host"] != socket.gethostname() and not same_job:
                raise RunLockedError(
                    f"run {run_dir} is being written by {_describe(h)}; this is {socket.gethostname()}, so whether "
                    f"that process still runs cannot be checked from here (delete {path} if it does not)")
            if h["host"] == socket.gethostname() and _alive(h["pid"]) and h["pid"] != os.getpid():
                raise RunLockedError(
                    f"run {run_dir} is being written by {_describe(h)}; wait for it to finish or stop it "
                    f"(if no process runs it, delete {path})")
            warn(f"took over the lock of run {run_dir} from {_describe(h)}, which no longer runs")
            cls._remove_if_unchanged(path, seen)
        raise RunLockedError(f"run {run_dir}: could not take {path} (other processes keep taking it)")

    def release(self):
        if not self.held:
            return
        self.held = False
        try:
            with open(self.path, "r", encoding="utf-8") as f:
                now = f.read()
        except OSError:
            return
        if now == self.text:
            try:
                os.unlink(self.path)
            except OSError:
                pass
