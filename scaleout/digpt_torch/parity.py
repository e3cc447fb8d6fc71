"""Checks the trainer's models against the test vectors of spec section 4: `python3 -m digpt_torch.parity [DIR]
[--nproc N] [--json] [--device cpu|cuda]` (run from scaleout/, or with scaleout/ on PYTHONPATH).

DIR defaults to REPO/../shared/parity (REPO: the folder holding scaleout/). For every `*.safetensors` vector:
- digpt: the official-named weights loaded into the trainer's model (ar_/kd_ memory quirk, shared tap norms);
  the fixed tables (pos_embed, decoder_pos_embed, mask), encoder_out, both predictions, both losses, every gradient,
  one AdamW step; the gen-only / dis-only models' losses on the same weights;
- clip_vision: the tokens of the tower loaded from each naming (OpenAI and Hugging Face);
- vit_classifier: the logits of the timm-named classifier.
With --nproc N > 1 every digpt vector is also run as N DDP ranks (gloo over 127.0.0.1, ranks started here as
processes with RANK/WORLD_SIZE/MASTER_ADDR/MASTER_PORT), the batch sharded across them (unevenly where it does not
divide; each rank's loss weighted by its share so the all-reduced gradient is the full batch's), checking the
losses, the averaged gradients and the AdamW step on every rank.

Tolerance (spec 4): max abs error <= 1e-4 * max|expected| per tensor, losses 1e-5 absolute; the AdamW check leaves
out entries whose expected gradient is below 100 * eps (a first Adam step turns rounding noise of a zero gradient
into an lr-sized update). Prints one line per check and a summary (--json: one JSON object {"passed", "failed",
"checks"}). Exit 0 all passed, 1 a check failed, 2 bad input (no DIR, a file that is not a vector: named).
"""
import argparse
import glob
import json
import os
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np

REL_TOL = 1e-4
LOSS_TOL = 1e-5


class BadInput(Exception):
    """A vector folder or file that cannot be checked (exit 2)."""


def _repo_root():
    # scaleout/digpt_torch/parity.py -> REPO
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def default_dir():
    return os.path.normpath(os.path.join(_repo_root(), "..", "shared", "parity"))


# --- vectors ---


def load_vector(path):
    """(name, kind, config, metadata, tensors) of a vector file; BadInput names the file."""
    from .safetensors_io import SafetensorsError, read_safetensors

    try:
        tensors, meta = read_safetensors(path)
    except SafetensorsError as e:
        raise BadInput(f"{e} (not a test vector)") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e})") from None
    kind = meta.get("kind")
    if kind not in ("digpt", "clip_vision", "vit_classifier"):
        raise BadInput(f"{path}: __metadata__.kind is {kind!r}; a test vector is digpt, clip_vision or vit_classifier")
    try:
        config = json.loads(meta.get("config", ""))
    except ValueError:
        raise BadInput(f"{path}: __metadata__.config is not valid JSON") from None
    need = {"digpt": ["input.images_nchw", "input.teacher_tokens", "input.order", "output.loss_gen",
                      "output.loss_dis", "output.pred_gen", "output.pred_dis", "output.encoder_out", "output.mask"],
            "clip_vision": ["input.images_nchw", "output.tokens"],
            "vit_classifier": ["input.images_nchw", "output.logits"]}[kind]
    absent = [k for k in need if k not in tensors]
    if absent:
        raise BadInput(f"{path}: a {kind} vector needs {', '.join(absent)}")
    if kind == "digpt" and "adamw" in meta:
        try:
            json.loads(meta["adamw"])
        except ValueError:
            raise BadInput(f"{path}: __metadata__.adamw is not valid JSON") from None
    name = os.path.basename(path)[: -len(".safetensors")]
    return name, kind, config, meta, tensors


def _sub(tensors, prefix):
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


# --- comparisons ---


def _check(vector, mode, check, ok, err=None, tol=None, detail=""):
    return {"vector": vector, "mode": mode, "check": check, "ok": bool(ok),
            "err": None if err is None else float(err), "tol": None if tol is None else float(tol), "detail": detail}


def _np(t):
    import torch

    if isinstance(t, torch.Tensor):
        return t.detach().float().cpu().numpy()
    return np.asarray(t, dtype=np.float32)


def compare(vector, mode, check, got, expected, rel=REL_TOL, absolute=None, mask=None):
    """max |got - expected| against rel * max|expected| (or `absolute`); `mask` (bool) selects the entries compared."""
    g, e = _np(got), _np(expected)
    if g.size == e.size and g.shape != e.shape and g.size == 1:
        g = g.reshape(e.shape)
    if g.shape != e.shape:
        return _check(vector, mode, check, False, detail=f"shape {list(g.shape)}, expected {list(e.shape)}")
    if mask is not None:
        g, e = g[mask], e[mask]
    if e.size == 0:
        return _check(vector, mode, check, True, 0.0, 0.0, "no entries to compare")
    if not np.all(np.isfinite(g)):
        return _check(vector, mode, check, False, float("inf"), None, "non-finite values")
    err = float(np.max(np.abs(g.astype(np.float64) - e.astype(np.float64))))
    tol = absolute if absolute is not None else rel * max(float(np.max(np.abs(e))), 1e-30)
    return _check(vector, mode, check, err <= tol, err, tol)


def _merge(vector, mode, check, items):
    """One check over many tensors: ok if all are, the worst err/tol ratio reported, every failure named."""
    bad = [i for i in items if not i["ok"]]
    ratio = lambda i: (i["err"] / i["tol"]) if i["err"] is not None and i["tol"] else (0.0 if i["ok"] else 1e30)  # noqa
    worst = max(items, key=ratio) if items else None
    if not items:
        return _check(vector, mode, check, False, detail="nothing to compare")
    detail = f"{len(items)} tensors, worst {worst['check']} (err/tol {ratio(worst):.3g})"
    if bad:
        def why(i):
            return i["detail"] or f"err {i['err']:.3g} > tol {i['tol']:.3g}"

        detail += "; FAILED: " + ", ".join(f"{i['check']} ({why(i)})" for i in bad[:20])
        detail += " ..." if len(bad) > 20 else ""
    return _check(vector, mode, check, not bad, worst["err"], worst["tol"], detail)


# --- digpt ---


def _digpt_setup(config, tensors, objective="digpt", device="cpu"):
    import torch

    from .model import _OFFICIAL_BUFFERS, _TAP_COPY, build_pretrain, load_official_state, official_name

    model = build_pretrain(config, objective, init="fast").to(device)
    w = _sub(tensors, "weights.")
    if objective != "digpt":
        # the one decoder's official names only (the other decoder is not part of this model)
        keep = {official_name(k) for k in model.state_dict()}

        def wanted(k):
            m = _TAP_COPY.match(k)
            return k in keep or k in _OFFICIAL_BUFFERS or bool(m and f"{m.group(1)}_enc_norm.0.{m.group(3)}" in keep)

        w = {k: v for k, v in w.items() if wanted(k)}
    load_official_state(model, w, "weights.*")
    x = torch.from_numpy(tensors["input.images_nchw"]).to(device)
    order = torch.from_numpy(tensors["input.order"].astype(np.int64)).to(device)
    tt = torch.from_numpy(tensors["input.teacher_tokens"]).to(device)
    return model, x, order, tt


def _adamw_hp(meta):
    hp = {"lr": 1e-3, "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weight_decay": 0.05}
    hp.update(json.loads(meta.get("adamw", "{}")))
    return hp


def _grad_and_adamw_checks(name, mode, model, tensors, meta):
    """Every gradient against grad.<official>, then one AdamW step against adamw.<official>."""
    from .model import official_name
    from .optim import make_adamw, optimizer_step

    checks = []
    params = dict(model.named_parameters())
    expected = _sub(tensors, "grad.")
    by_official = {official_name(n): n for n in params}
    items = []
    for off, n in by_official.items():
        if off not in expected:
            items.append(_check(name, mode, off, False, detail="no grad in the vector"))
        elif params[n].grad is None:
            items.append(_check(name, mode, off, False, detail="no gradient computed"))
        else:
            items.append(compare(name, mode, off, params[n].grad, expected[off]))
    for off in expected:
        if off not in by_official:
            items.append(_check(name, mode, off, False, detail="the vector has a gradient the model lacks"))
    checks.append(_merge(name, mode, "gradients", items))
    exp_w = _sub(tensors, "adamw.")
    if exp_w:
        hp = _adamw_hp(meta)
        opt = make_adamw(model, {"weight_decay": hp["weight_decay"], "beta1": hp["beta1"], "beta2": hp["beta2"],
                                 "eps": hp["eps"]})
        optimizer_step(opt, hp["lr"])
        items = []
        for off, n in by_official.items():
            if off not in exp_w:
                items.append(_check(name, mode, off, False, detail="no adamw value in the vector"))
                continue
            g = expected.get(off)
            mask = None if g is None else np.abs(g) >= 100 * hp["eps"]
            items.append(compare(name, mode, off, params[n], exp_w[off], mask=mask))
        checks.append(_merge(name, mode, "adamw step", items))
    return checks


def check_digpt(name, config, meta, tensors, device="cpu"):
    import torch

    from .model import sincos_2d

    mode = "1 proc" if device == "cpu" else f"1 proc {device}"
    checks = []
    model, x, order, tt = _digpt_setup(config, tensors, device=device)
    w = _sub(tensors, "weights.")
    if "pos_embed" in w:
        checks.append(compare(name, mode, "pos_embed (fixed)", model.pos_embed_with_cls(), w["pos_embed"]))
    if "decoder_pos_embed" in w:
        dpos = torch.from_numpy(sincos_2d(model.model_cfg["dec_dim"], model.grid, True)).unsqueeze(0)
        checks.append(compare(name, mode, "decoder_pos_embed (fixed)", dpos, w["decoder_pos_embed"]))
    mk = model.mask.cpu().numpy()
    for key in ("output.mask", "weights.mask"):
        if key in tensors:
            e = tensors[key]
            same = mk.shape == e.shape and np.array_equal(np.isinf(mk), np.isinf(e)) and \
                np.array_equal(np.where(np.isinf(e), 0, e), np.where(np.isinf(mk), 0, mk))
            checks.append(_check(name, mode, f"mask ({key})", same, 0.0 if same else None, 0.0,
                                 "" if same else f"shape {list(mk.shape)} vs {list(e.shape)} or -inf pattern differs"))
    out = model(x, order, tt, normalized=True, return_parts=True)
    checks.append(compare(name, mode, "encoder_out", out["encoder_out"], tensors["output.encoder_out"]))
    checks.append(compare(name, mode, "pred_gen", out["pred_gen"], tensors["output.pred_gen"]))
    checks.append(compare(name, mode, "pred_dis", out["pred_dis"], tensors["output.pred_dis"]))
    checks.append(compare(name, mode, "loss_gen", out["loss_gen"], tensors["output.loss_gen"], absolute=LOSS_TOL))
    checks.append(compare(name, mode, "loss_dis", out["loss_dis"], tensors["output.loss_dis"], absolute=LOSS_TOL))
    ce = out["cluster_error"]
    shape_ok = tuple(ce.shape) == (x.shape[0], model.k - 1) and bool(torch.isfinite(ce).all())
    checks.append(_check(name, mode, "cluster_error [B, K-1]", shape_ok, detail="" if shape_ok else
                         f"shape {list(ce.shape)}, expected [{x.shape[0]}, {model.k - 1}]"))
    out["loss"].backward()
    checks += _grad_and_adamw_checks(name, mode, model, tensors, meta)
    for objective, key in (("gen-only", "output.loss_gen"), ("dis-only", "output.loss_dis")):
        m1, x1, o1, t1 = _digpt_setup(config, tensors, objective, device)
        with torch.no_grad():
            r = m1(x1, o1, t1, normalized=True)
        checks.append(compare(name, mode, f"{objective} loss", r["loss"], tensors[key], absolute=LOSS_TOL))
    return checks


def check_clip(name, config, meta, tensors, device="cpu"):
    import torch

    from .teacher import clip_from_tensors

    mode = "1 proc" if device == "cpu" else f"1 proc {device}"
    checks = []
    hints = {k: config[k] for k in ("activation", "heads", "ln_eps") if k in config}
    x = torch.from_numpy(tensors["input.images_nchw"]).to(device)
    for prefix in ("openai.", "hf."):
        sub = _sub(tensors, prefix)
        if not sub:
            continue
        label = f"{name} [{prefix}*]"
        net, naming = clip_from_tensors({k: torch.from_numpy(v) for k, v in sub.items()}, hints, label)
        same_cfg = all(net.config.get(k) == v for k, v in config.items() if k in net.config)
        checks.append(_check(name, mode, f"{prefix[:-1]} config read", same_cfg,
                             detail="" if same_cfg else f"read {net.config}, vector says {config}"))
        with torch.no_grad():
            tok = net.to(device)(x)
        checks.append(compare(name, mode, f"{prefix[:-1]} tokens ({naming} naming)", tok, tensors["output.tokens"]))
    return checks


def check_vit(name, config, meta, tensors, device="cpu"):
    import torch

    from .model import build_classifier, load_strict

    mode = "1 proc" if device == "cpu" else f"1 proc {device}"
    net = build_classifier(config)
    load_strict(net, _sub(tensors, "weights."), f"{name} [weights.*]")
    with torch.no_grad():
        logits = net.to(device)(torch.from_numpy(tensors["input.images_nchw"]).to(device))
    return [compare(name, mode, "logits", logits, tensors["output.logits"])]


CHECKS = {"digpt": check_digpt, "clip_vision": check_clip, "vit_classifier": check_vit}


def run_single(vectors, device="cpu"):
    checks = []
    for name, kind, config, meta, tensors in vectors:
        try:
            checks += CHECKS[kind](name, config, meta, tensors, device)
        except Exception as e:  # a model that cannot even load the vector fails its checks, named
            checks.append(_check(name, "1 proc", "run", False, detail=f"{type(e).__name__}: {e}"))
    return checks


# --- DDP ---


def shards(batch, world):
    """[start, end) of each rank's rows: the first batch % world ranks get one more."""
    base, extra = divmod(batch, world)
    out, s = [], 0
    for r in range(world):
        n = base + (1 if r < extra else 0)
        out.append((s, s + n))
        s += n
    return out


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(out_path, paths):
    """One DDP rank (RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT from the environment)."""
    import datetime

    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    mode = f"{world} ranks"
    checks = []
    dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=120))
    try:
        for path in paths:
            name, kind, config, meta, tensors = load_vector(path)
            if kind != "digpt":
                continue
            try:
                model, x, order, tt = _digpt_setup(config, tensors)
                b = x.shape[0]
                s, e = shards(b, world)[rank]
                share = (e - s) / b
                rows = f"rows {s}:{e}"
                if e == s:  # an empty shard still joins the all-reduce, with a zero gradient
                    s, e, share = 0, 1, 0.0
                    rows = "empty shard: row 0 at weight 0"
                ddp = DDP(model)
                out = ddp(x[s:e], order[s:e], tt[s:e], normalized=True)
                (out["loss"] * (share * world)).backward()
                losses = torch.stack([out["loss_gen"].detach() * share, out["loss_dis"].detach() * share])
                dist.all_reduce(losses)
                checks.append(compare(name, mode, f"loss_gen (rank {rank}, {rows})", losses[0],
                                      tensors["output.loss_gen"], absolute=LOSS_TOL))
                checks.append(compare(name, mode, f"loss_dis (rank {rank})", losses[1], tensors["output.loss_dis"],
                                      absolute=LOSS_TOL))
                for c in _grad_and_adamw_checks(name, mode, model, tensors, meta):
                    c["check"] += f" (rank {rank})"
                    checks.append(c)
            except Exception as ex:
                checks.append(_check(name, mode, f"run (rank {rank})", False, detail=f"{type(ex).__name__}: {ex}"))
            dist.barrier()
    finally:
        dist.destroy_process_group()
    with open(out_path, "w") as f:
        json.dump(checks, f)


def run_ddp(paths, world, timeout=600):
    """Starts `world` ranks of `_worker` over the digpt vectors in `paths` and gathers their checks."""
    port = _free_port()
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tmp = tempfile.mkdtemp(prefix="digpt-parity-")
    procs = []
    try:
        for r in range(world):
            env = dict(os.environ, RANK=str(r), WORLD_SIZE=str(world), LOCAL_RANK=str(r),
                       MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
            env.setdefault("GLOO_SOCKET_IFNAME", "lo")
            env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
            out = os.path.join(tmp, f"rank{r}.json")
            cmd = [sys.executable, "-m", "digpt_torch.parity", "--_worker", out, *paths]
            procs.append((r, out, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)))
        deadline = time.time() + timeout
        checks = []
        for r, out, p in procs:
            try:
                log, _ = p.communicate(timeout=max(1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                for _, _, q in procs:
                    if q.poll() is None:
                        q.kill()
                log = p.communicate()[0]
                checks.append(_check("ddp", f"{world} ranks", f"rank {r}", False,
                                     detail=f"timed out after {timeout} s: {log.decode(errors='replace')[-500:]}"))
                continue
            if p.returncode != 0 or not os.path.exists(out):
                checks.append(_check("ddp", f"{world} ranks", f"rank {r}", False,
                                     detail=f"exit {p.returncode}: {log.decode(errors='replace')[-800:]}"))
                continue
            with open(out) as f:
                checks += json.load(f)
        return sorted(checks, key=lambda c: c["vector"])  # stable: rank order kept within a vector
    finally:
        for _, _, p in procs:
            if p.poll() is None:
                p.kill()
        for f in glob.glob(os.path.join(tmp, "*")):
            os.unlink(f)
        os.rmdir(tmp)


# --- the command ---


def _line(c):
    status = "ok  " if c["ok"] else "FAIL"
    nums = f"  err {c['err']:.3g} tol {c['tol']:.3g}" if c["err"] is not None and c["tol"] is not None else ""
    detail = f"  {c['detail']}" if c["detail"] else ""
    return f"{status} {c['vector']} [{c['mode']}] {c['check']}{nums}{detail}"


def run(directory=None, nproc=1, device="cpu"):
    """All checks of a folder of vectors: a list of check dicts. Raises BadInput (exit 2)."""
    import torch

    directory = directory or default_dir()
    if not os.path.isdir(directory):
        raise BadInput(f"{directory}: no such folder of test vectors")
    paths = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not paths:
        raise BadInput(f"{directory}: no *.safetensors test vectors in it")
    vectors = [load_vector(p) for p in paths]
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    checks = run_single(vectors, device)
    digpt = [p for p, v in zip(paths, vectors) if v[1] == "digpt"]
    if nproc > 1 and digpt:
        checks += run_ddp(digpt, nproc)
    return checks


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python3 -m digpt_torch.parity", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", help="folder of test vectors (default REPO/../shared/parity)")
    ap.add_argument("--nproc", type=int, default=1, help="also run the digpt vectors as N DDP ranks (gloo)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    ap.add_argument("--device", default="cpu", help="device of the single-process checks (cpu, cuda)")
    ap.add_argument("--_worker", help=argparse.SUPPRESS)
    a, rest = ap.parse_known_args(argv)
    if a._worker:
        _worker(a._worker, ([a.dir] if a.dir else []) + rest)
        return 0
    if rest:
        ap.error(f"unrecognized arguments: {' '.join(rest)}")
    import torch

    if a.device == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(min(4, torch.get_num_threads()))
    t0 = time.time()
    try:
        if a.nproc < 1:
            raise BadInput(f"--nproc {a.nproc}: must be at least 1")
        checks = run(a.dir, a.nproc, a.device)
    except BadInput as e:
        if a.json:
            print(json.dumps({"passed": 0, "failed": 0, "error": str(e), "checks": []}))
        else:
            print(f"error: {e}", file=sys.stderr)
        return 2
    passed = sum(c["ok"] for c in checks)
    failed = len(checks) - passed
    if a.json:
        print(json.dumps({"passed": passed, "failed": failed, "seconds": round(time.time() - t0, 2),
                          "checks": checks}))
    else:
        for c in checks:
            print(_line(c))
        print(f"{passed} passed, {failed} failed ({time.time() - t0:.1f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
