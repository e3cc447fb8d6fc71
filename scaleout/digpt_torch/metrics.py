"""RUN/metrics.jsonl and RUN/patch-order.jsonl in the workbench's own format (app/runs/metrics.ts).

- `js_json` serialises like JavaScript's JSON.stringify: keys in insertion order, no spaces, and numbers as
  Number.prototype.toString writes them (0.000625, 3.125e-7, 1e+21, 4 for 4.0; NaN and Infinity as null), so a
  line written here is byte for byte the line the workbench would write for the same values.
- `step_record` builds a pretraining step's line in PretrainRun.record's key order: step, loss, loss_gen (digpt,
  gen-only), loss_dis (all but gen-only), lr, agreement, img_per_s, epoch, time (ISO with milliseconds, Z).
- `append_line` appends one whole line with a single write (O_APPEND), as appendMetrics does.
- `truncate_after` is truncateMetrics: keeps the lines of steps <= the checkpoint's step (evaluation and event lines
  included), drops a line cut by a crash, and replaces the file whole (.tmp, fsync, rename) only when something is
  dropped; a resume calls it first, so a kill -9 never leaves a step logged twice.
- `engine_event` is the line `{"event":"engine","step","engine","world_size","time"}` written when a run changes
  engine; `last_engine` reads the last one back (none: the workbench's engine).
"""
import datetime
import json
import math
import os
from decimal import Decimal

from .files import fsync_dir as _fsync_dir, fsync_file

__all__ = [
    "js_number",
    "js_json",
    "iso_now",
    "metrics_path",
    "patch_order_path",
    "step_record",
    "patch_order_record",
    "engine_event",
    "append_line",
    "append_record",
    "parse_lines",
    "read_records",
    "truncate_after",
    "last_logged_step",
    "last_engine",
    "ENGINE",
]

ENGINE = "digpt_torch"


def js_number(x):
    """Number::toString of a double (ECMA-262 6.1.6.1.20): the shortest round-trip digits, JavaScript's layout."""
    if isinstance(x, bool):
        raise TypeError("bool is not a number here")
    if isinstance(x, int):
        if abs(x) < 2 ** 53:
            return str(x)
        x = float(x)
    x = float(x)
    if math.isnan(x) or math.isinf(x):
        return "null"  # JSON.stringify writes non-finite numbers as null
    if x == 0:
        return "0"  # -0 too
    sign = "-" if x < 0 else ""
    # repr gives the shortest digits that round-trip (as JavaScript picks them); only the layout differs
    _, digits, exp = Decimal(repr(abs(x))).as_tuple()
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    # value = 0.ds * 10^n, i.e. ds has k digits and x = ds * 10^(n - k)
    exp += len(digits) - len(ds)
    k = len(ds)
    n = exp + k
    if k <= n <= 21:
        s = ds + "0" * (n - k)
    elif 0 < n <= 21:
        s = ds[:n] + "." + ds[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + ds
    else:
        e = n - 1
        es = ("+" if e >= 0 else "-") + str(abs(e))
        s = ds + "e" + es if k == 1 else ds[0] + "." + ds[1:] + "e" + es
    return sign + s


def _js_string(s):
    # JSON.stringify escapes ", \ and control characters; everything else (non-ASCII too) is written as is
    return json.dumps(s, ensure_ascii=False)


def js_json(v):
    """JSON.stringify(v) for dicts (insertion order), lists, strings, numbers, bools and None."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, str):
        return _js_string(v)
    if isinstance(v, dict):
        return "{" + ",".join(_js_string(str(k)) + ":" + js_json(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(js_json(x) for x in v) + "]"
    try:
        import numpy as np

        if isinstance(v, np.ndarray):
            return js_json(v.tolist())
        if isinstance(v, np.integer):
            return js_number(int(v))
        if isinstance(v, np.floating):
            return js_number(float(v))
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, (int, float)):
        return js_number(v)
    raise TypeError(f"cannot write {type(v).__name__} as JSON")


def iso_now():
    """new Date().toISOString(): UTC, milliseconds, Z."""
    t = datetime.datetime.now(datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def metrics_path(run_dir):
    return os.path.join(run_dir, "metrics.jsonl")


def patch_order_path(run_dir):
    return os.path.join(run_dir, "patch-order.jsonl")


def step_record(step, objective, loss, loss_gen, loss_dis, lr, agreement, img_per_s, epoch, time=None):
    """A pretraining step's metrics.jsonl line (PretrainRun.record), as a dict in the workbench's key order."""
    rec = {"step": int(step), "loss": float(loss)}
    if objective in ("digpt", "gen-only"):
        rec["loss_gen"] = float(loss_gen)
    if objective != "gen-only":
        rec["loss_dis"] = float(loss_dis)
    rec["lr"] = float(lr)
    rec["agreement"] = float(agreement)
    rec["img_per_s"] = float(img_per_s)
    rec["epoch"] = int(epoch)
    rec["time"] = time or iso_now()
    return rec


def patch_order_record(step, order, cluster_error, samples=None):
    """patch-order.jsonl's line: up to 8 samples' orders [[K ints]] and per-cluster errors [[K-1 floats]]; with
    `samples` ([n, S, S, 3] uint8, the student's crops of those samples) also {"count", "size", "pixels_b64"}, which
    the app draws (app/workbench/external.ts)."""
    rec = {"step": int(step), "order": [[int(v) for v in row] for row in order],
           "cluster_error": [[float(v) for v in row] for row in cluster_error]}
    if samples is not None:
        import base64

        n, size = int(samples.shape[0]), int(samples.shape[1])
        rec["samples"] = {"count": n, "size": size,
                          "pixels_b64": base64.b64encode(samples.astype("uint8").tobytes()).decode("ascii")}
    return rec


def engine_event(step, world_size, engine=ENGINE, time=None):
    return {"event": "engine", "step": int(step), "engine": engine, "world_size": int(world_size),
            "time": time or iso_now()}


def append_line(path, text):
    """Appends `text` + newline with one write on an O_APPEND descriptor (a crash leaves at most a cut last line)."""
    data = (text + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
    finally:
        os.close(fd)


def append_record(path, rec):
    append_line(path, js_json(rec))


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


def parse_lines(text):
    """parseMetrics: (records as [(line, dict)], dropped count) of a metrics.jsonl text."""
    records = []
    dropped = 0
    for line in text.split("\n"):
        if line.strip() == "":
            continue
        try:
            r = json.loads(line, parse_constant=_reject_constant)
        except ValueError:
            dropped += 1
            continue
        if isinstance(r, dict):
            records.append((line, r))
        else:
            dropped += 1
    return records, dropped


def read_records(path):
    if not os.path.exists(path):
        return []
    with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
        return [r for _, r in parse_lines(f.read())[0]]


def _is_num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)



def replace_file(path, data):
    """replaceFile: path.tmp, fsync, rename, fsync of the folder."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = 0
        while done < len(data):
            done += os.write(fd, data[done:])
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def truncate_after(path, step):
    """Keeps the lines of steps <= `step` and drops unreadable ones (truncateMetrics). Returns (kept, dropped)."""
    if not os.path.exists(path):
        return 0, 0
    with open(path, "rb") as f:
        raw = f.read()
    text = raw.decode("utf-8", errors="surrogateescape")
    records, unreadable = parse_lines(text)
    kept = [(line, r) for line, r in records if _is_num(r.get("step")) and r["step"] <= step]
    dropped = unreadable + len(records) - len(kept)
    if dropped == 0 and (text == "" or text.endswith("\n")):
        return len(kept), 0
    out = "".join(line + "\n" for line, _ in kept).encode("utf-8", errors="surrogateescape")
    replace_file(path, out)
    return len(kept), dropped



def last_logged_step(records):
    """The last training step logged (a line with a numeric step and loss); 0 when none."""
    s = 0
    for r in records:
        if _is_num(r.get("step")) and _is_num(r.get("loss")):
            s = max(s, r["step"])
    return s


def last_engine(records):
    """The last engine event line, or None (a run that never changed engine: the workbench's)."""
    last = None
    for r in records:
        if r.get("event") == "engine":
            last = r
    return last
