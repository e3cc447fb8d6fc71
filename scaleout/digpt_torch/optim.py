"""AdamW and the lr schedule as the workbench runs them (engine/optim/adamw.ts, app/worker/training-run.ts), and the
workbench's optimizer.safetensors in both layouts.

- Decay groups: weight decay on every parameter except 1-D ones and `*.bias` (cls_token and the decoder tokens ARE
  decayed); betas (0.9, 0.95), eps 1e-8, weight decay from the run's config (0.05). torch.optim.AdamW computes
  exactly the workbench's update (p *= 1 - lr*wd on decayed parameters; bias-corrected moments).
- lr: blr * effective_batch / 256, linear warm-up over warmup_steps, then half-cycle cosine to min_lr, per step.
- optimizer.safetensors: `m.<name>`, `v.<name>` and `__metadata__.step`. Version 1 (what the workbench writes
  today, no format_version) holds each moment FLAT in the engine's internal layout (Linear [in, out], conv
  [kh*kw*in, out], the decoders' enc2dec interleaved layer-major); version 2 holds them in PyTorch layouts and real
  shapes, the same conversion as the weights, with `__metadata__` {"format_version": "2", "step": "S"}.
  Both are read; version 2 is written (version 1 on request).
"""
import math
import re

import numpy as np
import torch
import torch.nn as nn

from .safetensors_io import SafetensorsError, SafetensorsFile, write_safetensors

__all__ = ["decays", "param_groups", "make_adamw", "lr_at", "optimizer_step", "param_layouts", "to_engine",
           "from_engine", "optimizer_state_to_workbench", "save_optimizer", "load_optimizer_from_workbench"]

BETAS = (0.9, 0.95)
EPS = 1e-8


def decays(name, shape):
    """The official decay rule, on the PyTorch shape: every parameter except 1-D ones and `*.bias`."""
    return len(shape) > 1 and not name.endswith(".bias")


def param_groups(model, weight_decay):
    """Two torch param groups, decayed and not (only parameters that require grad: buffers are never included)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if decays(name, p.shape) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
            {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]


def make_adamw(model, cfg, lr=0.0, **kw):
    """torch.optim.AdamW over the model's parameters with the workbench's groups, betas (0.9, 0.95), eps 1e-8 and
    cfg['weight_decay'] (0.05 when absent). `cfg` is the run's config.json (only weight_decay is read; betas/eps
    may be overridden by cfg keys 'beta1', 'beta2', 'eps'). Set the lr per step with `lr_at`."""
    cfg = cfg or {}
    wd = cfg.get("weight_decay", 0.05)
    betas = (cfg.get("beta1", BETAS[0]), cfg.get("beta2", BETAS[1]))
    return torch.optim.AdamW(param_groups(model, wd), lr=lr, betas=betas, eps=cfg.get("eps", EPS),
                             weight_decay=wd, **kw)


def effective_batch(cfg):
    """Images per optimizer step: world_size * per_rank_batch * accum with a bundle's `scaleout` block, else the
    workbench's batch * accum."""
    accum = cfg.get("accum", 1)
    so = cfg.get("scaleout")
    if so and so.get("world_size") and so.get("per_rank_batch"):
        return so["world_size"] * so["per_rank_batch"] * accum
    return cfg["batch"] * accum


def lr_at(step, cfg, steps_total=None, effective_batch_size=None):
    """lr of optimizer step `step`, 1-based (the "step" metrics.jsonl logs for it): the workbench evaluates its
    schedule at the number of steps already taken, so lr_at(1) == 0 whenever warmup_steps > 0.

    base = blr * effective batch / 256 (`effective_batch_size`, or `effective_batch(cfg)`); for s = step - 1:
    s < warmup: base * s / warmup; else min_lr + (base - min_lr) * 0.5 * (1 + cos(pi * min(1, (s - warmup) /
    max(1, total - warmup)))), total = steps_total or cfg['steps']."""
    eb = effective_batch_size if effective_batch_size is not None else effective_batch(cfg)
    base = cfg["blr"] * eb / 256
    min_lr = cfg.get("min_lr", 0.0)
    warm = cfg.get("warmup_steps", 0)
    total = steps_total if steps_total is not None else cfg["steps"]
    s = step - 1
    if s < warm:
        return base * s / warm
    span = max(1, total - warm)
    progress = min(1.0, (s - warm) / span)
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizer_step(opt, lr):
    """Sets every group's lr and takes one step."""
    for g in opt.param_groups:
        g["lr"] = lr
    opt.step()


# --- layouts of optimizer.safetensors version 1 (engine/models/params.ts) ---

_ENC2DEC = re.compile(r"^(gen|dis)_enc2dec\.(weight|bias)$")


def param_layouts(model):
    """name -> 'plain' | 'linear' | 'conv' | ('interleaved', dec_depth): how the engine keeps each parameter."""
    out = {}
    depth = getattr(model, "model_cfg", {}).get("dec_depth")
    for mod_name, mod in model.named_modules():
        for leaf, _ in mod.named_parameters(recurse=False):
            name = f"{mod_name}.{leaf}" if mod_name else leaf
            if _ENC2DEC.match(name) and depth is not None:
                out[name] = ("interleaved", depth)
            elif isinstance(mod, nn.Linear) and leaf == "weight":
                out[name] = "linear"
            elif isinstance(mod, nn.Conv2d) and leaf == "weight":
                out[name] = "conv"
            elif leaf == "in_proj_weight":
                out[name] = "linear"
            else:
                out[name] = "plain"
    return out


def to_engine(a, layout):
    """PyTorch-layout array -> the engine's flat array."""
    a = np.asarray(a, dtype=np.float32)
    if layout == "plain":
        return a.reshape(-1)
    if layout == "linear":
        return np.ascontiguousarray(a.T).reshape(-1)  # [out, in] -> [in, out]
    if layout == "conv":
        o, ci, kh, kw = a.shape
        return np.ascontiguousarray(a.transpose(2, 3, 1, 0)).reshape(-1)  # -> [kh, kw, in, out]
    _, depth = layout
    o = a.shape[0]
    w = o // depth
    if a.ndim == 1:
        # torch index c*depth + l -> engine l*w + c
        return np.ascontiguousarray(a.reshape(w, depth).T).reshape(-1)
    i = a.shape[1]
    # [out, in] = [(w, depth), in] -> engine [in, (depth, w)]
    return np.ascontiguousarray(a.reshape(w, depth, i).transpose(2, 1, 0)).reshape(-1)


def from_engine(flat, shape, layout):
    """The engine's flat array -> PyTorch layout of `shape`."""
    flat = np.asarray(flat, dtype=np.float32).reshape(-1)
    shape = tuple(shape)
    if layout == "plain":
        return flat.reshape(shape)
    if layout == "linear":
        o, i = shape
        return np.ascontiguousarray(flat.reshape(i, o).T)
    if layout == "conv":
        o, ci, kh, kw = shape
        return np.ascontiguousarray(flat.reshape(kh, kw, ci, o).transpose(3, 2, 0, 1))
    _, depth = layout
    o = shape[0]
    w = o // depth
    if len(shape) == 1:
        return np.ascontiguousarray(flat.reshape(depth, w).T).reshape(o)
    i = shape[1]
    return np.ascontiguousarray(flat.reshape(i, depth, w).transpose(2, 1, 0)).reshape(o, i)


# --- optimizer.safetensors ---


def _step_of(opt):
    steps = set()
    for st in opt.state.values():
        if "step" in st:
            s = st["step"]
            steps.add(int(s.item()) if torch.is_tensor(s) else int(s))
    if len(steps) > 1:
        raise ValueError(f"optimizer parameters are at different steps {sorted(steps)}; a checkpoint needs one step")
    return steps.pop() if steps else 0


def optimizer_state_to_workbench(opt, model, version=2):
    """AdamW's state as optimizer.safetensors content: (tensors dict of numpy float32, metadata). Version 2: m/v in
    PyTorch shapes, metadata {"format_version": "2", "step": S}; version 1: the workbench's flat engine layout,
    metadata {"step": S}. A parameter with no state yet (no step taken) gets zero moments."""
    if version not in (1, 2):
        raise ValueError(f"optimizer.safetensors version {version}: only 1 and 2 exist")
    layouts = param_layouts(model) if version == 1 else None
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        st = opt.state.get(p, {})
        for label, key in (("m", "exp_avg"), ("v", "exp_avg_sq")):
            t = st.get(key)
            a = np.zeros(tuple(p.shape), np.float32) if t is None else t.detach().float().cpu().numpy()
            out[f"{label}.{name}"] = to_engine(a, layouts[name]) if version == 1 else np.ascontiguousarray(a)
    meta = {"step": str(_step_of(opt))}
    if version == 2:
        meta = {"format_version": "2", "step": meta["step"]}
    return out, meta


def save_optimizer(opt, model, path, version=2):
    """Writes optimizer.safetensors (version 2 unless asked), atomically."""
    tensors, meta = optimizer_state_to_workbench(opt, model, version)
    write_safetensors(path, tensors, meta)


def load_optimizer_from_workbench(opt, model, path):
    """Restores AdamW's moments and step from an optimizer.safetensors of version 1 (the workbench's flat engine
    layout) or 2 (PyTorch layout). Every trained parameter's m and v must be there with the right size, and nothing
    else; errors name the file and the keys. Returns the step."""
    path = str(path)
    with SafetensorsFile(path) as f:
        meta = dict(f.metadata)
        version = meta.get("format_version", "1")
        if version not in ("1", "2"):
            raise SafetensorsError(path, f"optimizer state format_version {version!r}: this trainer reads 1 and 2")
        try:
            step = int(meta.get("step", ""))
        except ValueError:
            raise SafetensorsError(path, f"__metadata__.step is {meta.get('step')!r}, not a step count") from None
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        want = {f"{lbl}.{n}" for n, _ in params for lbl in ("m", "v")}
        have = set(f.keys())
        missing = sorted(want - have)
        unexpected = sorted(have - want)
        if missing or unexpected:
            bits = []
            if missing:
                bits.append(f"missing keys: {', '.join(missing[:12])}" + (" ..." if len(missing) > 12 else ""))
            if unexpected:
                bits.append(f"unexpected keys: {', '.join(unexpected[:12])}" + (" ..." if len(unexpected) > 12 else ""))
            raise SafetensorsError(path, "optimizer state does not fit the model: " + "; ".join(bits))
        layouts = param_layouts(model) if version == "1" else None
        new = {}
        for n, p in params:
            pair = []
            for lbl in ("m", "v"):
                a = f.get(f"{lbl}.{n}")
                if version == "1":
                    if a.size != p.numel():
                        raise SafetensorsError(path, f"has {a.size} values, the parameter has {p.numel()}",
                                               f"{lbl}.{n}")
                    a = from_engine(a, tuple(p.shape), layouts[n])
                elif tuple(a.shape) != tuple(p.shape):
                    raise SafetensorsError(path, f"has shape {list(a.shape)}, the parameter is {list(p.shape)}",
                                           f"{lbl}.{n}")
                pair.append(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
            new[p] = pair
    for p, (m, v) in new.items():
        st = opt.state[p]
        st["step"] = torch.tensor(float(step))
        st["exp_avg"] = m.to(device=p.device, dtype=p.dtype).contiguous()
        st["exp_avg_sq"] = v.to(device=p.device, dtype=p.dtype).contiguous()
    return step
