"""Frozen teachers that give D-iGPT its targets, as app/worker/teacher.ts builds them: normalised pixels, a CLIP vision
tower (OpenAI/OpenCLIP `visual.*` or Hugging Face `vision_model.*` names), or a classifier the workbench exported.

`load_teacher(spec, model_cfg)` returns a `Teacher` module: `teacher(images01)` takes [B, 3, R, R] images in [0, 1]
at `teacher.resolution` (the same crop as the student's, resized to R), applies its own mean/std and returns tokens
[B, 1 + grid*grid, dim], cls FIRST, without gradient.
"""
import json
import os
import re

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import (IMAGENET_MEAN, IMAGENET_STD, ConfigError, WeightsError, _names, build_classifier, load_strict)
from .safetensors_io import SafetensorsFile

__all__ = ["CLIP_MEAN", "CLIP_STD", "Teacher", "ClipVision", "load_teacher", "clip_from_tensors", "clip_metadata",
           "resolve_clip_config"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resolve_clip_config(raw, source="CLIP config"):
    """The workbench's resolveClipConfig: the activation is never guessed."""
    act = raw.get("activation")
    if act not in ("quick_gelu", "gelu"):
        what = "missing" if act is None else f"'{act}', unknown"
        raise ConfigError(f"{source}: the activation is {what}; say \"quick_gelu\" (OpenAI weights) or \"gelu\" "
                          "(most OpenCLIP weights) in the file's metadata or a sidecar config")
    c = {}
    for k in ("resolution", "patch_size", "width", "layers", "heads", "output_dim"):
        v = raw.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{source}: config field {k} must be an integer >= 1, got {json.dumps(v)}")
        c[k] = v
    c["activation"] = act
    eps = raw.get("ln_eps", 1e-5)
    c["ln_eps"] = 1e-5 if eps is None else float(eps)
    if c["resolution"] % c["patch_size"]:
        raise ConfigError(f"{source}: resolution {c['resolution']} is not divisible by patch_size {c['patch_size']}")
    if c["width"] % c["heads"]:
        raise ConfigError(f"{source}: width {c['width']} is not divisible by heads {c['heads']}")
    return c


class _QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class _ClipAttention(nn.Module):
    """nn.MultiheadAttention's parameter names (in_proj_weight rows q | k | v, in_proj_bias, out_proj)."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.zeros(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x):
        b, n, w = x.shape
        d = w // self.heads
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        # [B, N, W] -> [B, heads, N, d]
        q, k, v = (t.reshape(b, n, self.heads, d).transpose(1, 2) for t in (q, k, v))
        a = torch.matmul(q * d ** -0.5, k.transpose(-2, -1)).softmax(-1)
        return self.out_proj(torch.matmul(a, v).transpose(1, 2).reshape(b, n, w))


class _ClipMlp(nn.Module):
    def __init__(self, width, act):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.act = _QuickGELU() if act == "quick_gelu" else nn.GELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x):
        return self.c_proj(self.act(self.c_fc(x)))


class _ResBlock(nn.Module):
    def __init__(self, width, heads, act, eps):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = _ClipAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = _ClipMlp(width, act)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class _Transformer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.resblocks = nn.ModuleList(
            _ResBlock(c["width"], c["heads"], c["activation"], c["ln_eps"]) for _ in range(c["layers"]))


class _Visual(nn.Module):
    def __init__(self, c):
        super().__init__()
        w = c["width"]
        g = c["resolution"] // c["patch_size"]
        self.conv1 = nn.Conv2d(3, w, kernel_size=c["patch_size"], stride=c["patch_size"], bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(w))
        self.positional_embedding = nn.Parameter(torch.zeros(1 + g * g, w))
        self.ln_pre = nn.LayerNorm(w, eps=c["ln_eps"])
        self.transformer = _Transformer(c)
        self.ln_post = nn.LayerNorm(w, eps=c["ln_eps"])
        self.proj = nn.Parameter(torch.zeros(w, c["output_dim"]))


class ClipVision(nn.Module):
    """The CLIP vision tower under OpenAI's names (`visual.*`): ln_post(all tokens) @ proj, cls first.
    forward takes images normalised with CLIP's mean/std, [B, 3, R, R]."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.grid = config["resolution"] // config["patch_size"]
        self.visual = _Visual(config)

    def forward(self, x):
        v = self.visual
        c = self.config
        if tuple(x.shape[2:]) != (c["resolution"], c["resolution"]):
            raise ValueError(f"teacher input is {x.shape[2]}x{x.shape[3]} px, the CLIP tower takes "
                             f"{c['resolution']}x{c['resolution']}")
        t = v.conv1(x).flatten(2).transpose(1, 2)  # [B, g*g, W], no bias
        cls = v.class_embedding.view(1, 1, -1).expand(t.shape[0], -1, -1)
        h = v.ln_pre(torch.cat([cls, t], dim=1) + v.positional_embedding)  # cls FIRST
        for blk in v.transformer.resblocks:
            h = blk(h)
        # ln_post and the projection on EVERY token (HF's own forward does it on the pooled token only)
        return v.ln_post(h) @ v.proj


# --- naming (engine/models/naming.ts) ---


def _detect_naming(keys, label):
    if "visual.conv1.weight" in keys:
        return "openai"
    if "vision_model.embeddings.patch_embedding.weight" in keys:
        return "hf"
    raise WeightsError(f"{label}: unknown key layout for a CLIP vision tower: expected OpenAI/OpenCLIP "
                       f"'visual.conv1.weight' or Hugging Face 'vision_model.embeddings.patch_embedding.weight' "
                       f"(found {_names(list(keys)[:6], 6)})")


_HF_FIXED = {
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_HF_SUB = [("ln_1.", "layer_norm1."), ("ln_2.", "layer_norm2."), ("attn.out_proj.", "self_attn.out_proj."),
           ("mlp.c_fc.", "mlp.fc1."), ("mlp.c_proj.", "mlp.fc2.")]


def _hf_keys(canonical):
    """The Hugging Face key(s) of an OpenAI-named parameter (in_proj = q, k, v stacked; proj = projection^T)."""
    if canonical in _HF_FIXED:
        return [_HF_FIXED[canonical]]
    if canonical == "visual.proj":
        return ["visual_projection.weight"]
    m = re.match(r"^visual\.transformer\.resblocks\.(\d+)\.(.+)$", canonical)
    p = f"vision_model.encoder.layers.{m.group(1)}"
    rest = m.group(2)
    if rest == "attn.in_proj_weight":
        return [f"{p}.self_attn.{x}_proj.weight" for x in "qkv"]
    if rest == "attn.in_proj_bias":
        return [f"{p}.self_attn.{x}_proj.bias" for x in "qkv"]
    for a, b in _HF_SUB:
        if rest.startswith(a):
            return [f"{p}.{b}{rest[len(a):]}"]
    raise KeyError(canonical)


def _is_vision_key(k, naming):
    if naming == "openai":
        return k.startswith("visual.")
    # position_ids is a buffer HF checkpoints may carry; it is not a weight
    return (k.startswith("vision_model.") or k == "visual_projection.weight") and not k.endswith("position_ids")


def _hf_to_openai(tensors, canonical_names, label):
    out = {}
    used = set()
    missing = []
    for name in canonical_names:
        keys = _hf_keys(name)
        used.update(keys)
        absent = [k for k in keys if k not in tensors]
        if absent:
            missing += absent
            continue
        parts = [torch.as_tensor(tensors[k]) for k in keys]
        if name == "visual.proj":
            out[name] = parts[0].t().contiguous()
        else:
            out[name] = parts[0] if len(parts) == 1 else torch.cat(parts, 0)
    unexpected = [k for k in tensors if k not in used and _is_vision_key(k, "hf")]
    if missing or unexpected:
        bits = []
        if missing:
            bits.append(f"missing keys: {_names(missing)}")
        if unexpected:
            bits.append(f"unexpected keys: {_names(unexpected)}")
        raise WeightsError(f"{label}: {'; '.join(bits)}", missing, unexpected)
    return out


def _infer_clip_config(tensors, naming, meta, label):
    shape = lambda k: tuple(torch.as_tensor(tensors[k]).shape)  # noqa: E731
    o = naming == "openai"
    conv = shape("visual.conv1.weight" if o else "vision_model.embeddings.patch_embedding.weight")
    pos = shape("visual.positional_embedding" if o else "vision_model.embeddings.position_embedding.weight")
    pk = "visual.proj" if o else "visual_projection.weight"
    if pk not in tensors:
        raise WeightsError(f"{label}: missing key {pk} (the projection)", [pk])
    proj = shape(pk)
    rx = re.compile(r"^visual\.transformer\.resblocks\.(\d+)\." if o else r"^vision_model\.encoder\.layers\.(\d+)\.")
    layers = 0
    for k in tensors:
        m = rx.match(k)
        if m:
            layers = max(layers, int(m.group(1)) + 1)
    width, patch = conv[0], conv[2]
    grid = round((pos[0] - 1) ** 0.5)
    heads = meta.get("heads", width // 64 if width % 64 == 0 else None)
    return resolve_clip_config({
        "resolution": grid * patch, "patch_size": patch, "width": width, "layers": layers,
        "heads": int(heads) if heads is not None else None, "output_dim": proj[1] if o else proj[0],
        "activation": meta.get("activation"), "ln_eps": meta.get("ln_eps", 1e-5)}, label)


def clip_metadata(path, metadata):
    """Architecture hints of a CLIP file (the workbench's clipMetadata): a sidecar `<file>.json`, `<stem>.json` or
    `config.json` beside it, then `__metadata__.config` (JSON), then the metadata's own keys (which win).
    OpenCLIP's `quick_gelu`, HF's `vision_config.hidden_act` / `num_attention_heads` / `layer_norm_eps` count."""
    out = {}

    def take(o):
        if not isinstance(o, dict):
            return
        vc = o.get("vision_config", o.get("vision_cfg"))
        if isinstance(vc, dict):
            take(vc)
        if isinstance(o.get("activation"), str):
            out["activation"] = o["activation"]
        if o.get("hidden_act") in ("quick_gelu", "gelu"):
            out["activation"] = o["hidden_act"]
        if isinstance(o.get("quick_gelu"), bool):
            out["activation"] = "quick_gelu" if o["quick_gelu"] else "gelu"
        for src, dst in (("heads", "heads"), ("num_attention_heads", "heads"), ("ln_eps", "ln_eps"),
                         ("layer_norm_eps", "ln_eps")):
            v = o.get(src)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[dst] = v

    path = str(path)
    stem = path[: -len(".safetensors")] + ".json" if path.endswith(".safetensors") else path
    for side in (path + ".json", stem, os.path.join(os.path.dirname(path), "config.json")):
        if side != path and os.path.exists(side):
            if not os.path.isfile(side):
                raise WeightsError(f"{side}: not a regular file; a sidecar config must be a JSON file")
            try:
                with open(side, encoding="utf-8") as f:
                    take(json.load(f))
            except ValueError as e:
                raise WeightsError(f"{side}: not valid JSON ({e})") from None
            break
    if metadata.get("config"):
        try:
            take(json.loads(metadata["config"]))
        except ValueError:
            raise WeightsError(f"{path}: __metadata__.config is not valid JSON") from None
    take(metadata)
    if isinstance(metadata.get("heads"), str):
        try:
            out["heads"] = int(metadata["heads"])
        except ValueError:
            raise WeightsError(f"{path}: __metadata__.heads is not an integer") from None
    return out


def clip_from_tensors(tensors, meta, label):
    """A CLIP tower from tensors in either naming (text-tower keys of a full CLIP checkpoint are ignored):
    (ClipVision, naming)."""
    naming = _detect_naming(tensors, label)
    cfg = _infer_clip_config(tensors, naming, meta, label)
    model = ClipVision(cfg)
    names = list(model.state_dict())
    if naming == "openai":
        src = {k: v for k, v in tensors.items() if _is_vision_key(k, "openai")}
    else:
        src = _hf_to_openai(tensors, names, label)
    load_strict(model, src, label)
    return model, naming


# --- teachers ---


class Teacher(nn.Module):
    """A frozen teacher: `forward(images01)` [B, 3, R, R] in [0, 1] -> tokens [B, 1 + grid^2, dim], cls first.

    Attributes: spec, kind ('pixels' | 'clip' | 'vit'), resolution R, grid, dim, mean, std (its own normalisation).
    """

    def __init__(self, spec, kind, resolution, grid, dim, mean, std, net=None, patch=None):
        super().__init__()
        self.spec, self.kind = spec, kind
        self.resolution, self.grid, self.dim = resolution, grid, dim
        self.mean, self.std = tuple(mean), tuple(std)
        self.patch = patch
        self.net = net
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        if net is not None:
            net.requires_grad_(False)
            net.eval()

    def train(self, mode=True):  # always frozen
        return super().train(False)

    def tokens_from_normalized(self, x):
        """Tokens from images already normalised with this teacher's mean/std (the parity vectors' inputs)."""
        if self.kind == "pixels":
            return _pixel_tokens(x, self.patch)
        if self.kind == "clip":
            return self.net(x)
        return self.net.tokens(x)

    @torch.no_grad()
    def forward(self, images01):
        if images01.dim() != 4 or tuple(images01.shape[1:]) != (3, self.resolution, self.resolution):
            raise ValueError(f"teacher {self.spec} takes images [B, 3, {self.resolution}, {self.resolution}] in "
                             f"[0, 1] (crop at the teacher's resolution), got {list(images01.shape)}")
        return self.tokens_from_normalized((images01 - self._mean) / self._std)


def _pixel_tokens(x, p):
    """Per-patch normalised pixels (MAE's norm_pix targets; each patch flattened (kh, kw, c) as the workbench's NHWC
    rows are), cls target = the mean of the patch vectors: [B, 1 + G*G, p*p*3]."""
    b, _, h, w = x.shape
    g = h // p
    # [B, 3, H, W] -> [B, 3, G, p, G, p] -> [B, G, G, p, p, 3] -> [B, G*G, p*p*3]
    t = x.reshape(b, 3, g, p, g, p).permute(0, 2, 4, 3, 5, 1).reshape(b, g * g, p * p * 3)
    mean = t.mean(-1, keepdim=True)
    var = ((t - mean) ** 2).mean(-1, keepdim=True)
    norm = (t - mean) / torch.sqrt(var + 1e-6)
    return torch.cat([norm.mean(1, keepdim=True), norm], dim=1)


def load_teacher(spec, model_cfg):
    """'pixels' or a safetensors file: a CLIP vision tower (either naming) or a workbench classifier export
    (metadata kind vit_classifier with its config). Checks the teacher's grid and width against model_cfg's
    teacher_grid / teacher_dim when it has them. Errors name the file."""
    if spec == "pixels":
        p = model_cfg["patch_size"]
        img = model_cfg["img_size"]
        t = Teacher("pixels", "pixels", img, img // p, p * p * 3, IMAGENET_MEAN, IMAGENET_STD, patch=p)
    else:
        if os.path.isdir(spec):
            raise WeightsError(f"teacher {spec}: a folder; name the teacher's .safetensors file (a run's "
                               "checkpoints/step-*/model.safetensors, or the bundle's teacher.safetensors)")
        with SafetensorsFile(spec) as f:
            meta = dict(f.metadata)
            tensors = {k: torch.from_numpy(f.get(k)).float() for k in f.keys()}
        if meta.get("kind") == "vit_classifier":
            if not meta.get("config"):
                raise WeightsError(f"{spec}: a vit_classifier checkpoint needs its config in __metadata__.config")
            net = build_classifier(json.loads(meta["config"]))
            load_strict(net, tensors, spec)
            c = net.cfg
            g = c["img_size"] // c["patch_size"]
            t = Teacher(spec, "vit", c["img_size"], g, c["embed_dim"], IMAGENET_MEAN, IMAGENET_STD, net=net)
        else:
            net, _ = clip_from_tensors(tensors, clip_metadata(spec, meta), spec)
            c = net.config
            t = Teacher(spec, "clip", c["resolution"], net.grid, c["output_dim"], CLIP_MEAN, CLIP_STD, net=net)
    tg, td = model_cfg.get("teacher_grid"), model_cfg.get("teacher_dim")
    if (tg is not None and tg != t.grid) or (td is not None and td != t.dim):
        raise ConfigError(f"teacher {spec} gives {t.grid}x{t.grid} tokens of width {t.dim}, the model config says "
                          f"teacher_grid {tg}, teacher_dim {td}")
    return t
