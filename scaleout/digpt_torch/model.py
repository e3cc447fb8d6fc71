"""The D-iGPT pretraining models (spec section 1) and the timm ViT classifier (section 3) in PyTorch, workbench-named.

Every objective of the workbench (engine/models/digpt.ts, kd.ts, mae.ts) puts its head(s) on ONE student trunk
(patch embedding, fixed sin-cos positions, pre-LN ViT blocks, cls appended LAST, no final norm), and its
`state_dict()` keys are exactly the keys of the workbench's `model.safetensors` (canonical names, PyTorch layouts:
Linear (out, in), conv (out, in, kh, kw)). Fixed tables (sin-cos position embeddings, the mask, the bilinear maps,
the ImageNet mean/std) are non-persistent buffers: not parameters (so no optimizer sees them) and not in
`state_dict()`.

Tensors are PyTorch's NCHW for images, (B, tokens, features) for sequences. The official checkpoint names (with
their ar_/kd_ memory quirk) are converted here too: `official_name`, `load_official_state`, `official_state`.
"""
import contextlib
import json
import math
import os
import re

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from .safetensors_io import SafetensorsFile, save_torch

__all__ = [
    "OBJECTIVES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ConfigError",
    "WeightsError",
    "resolve_model_config",
    "resolve_vit_config",
    "default_taps",
    "sincos_2d",
    "cluster_table",
    "cluster_mask",
    "bilinear_matrix",
    "build_pretrain",
    "workbench_init_order",
    "build_classifier",
    "DigptPretrain",
    "KdPretrain",
    "MaePretrain",
    "VitClassifier",
    "load_strict",
    "load_workbench_state",
    "save_workbench_state",
    "official_name",
    "load_official_state",
    "official_state",
    "js_json",
]

OBJECTIVES = ("digpt", "gen-only", "dis-only", "kd", "mae")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torch >= 2.0's fused attention; DIGPT_TORCH_ATTENTION=math forces the plain softmax(q k^T) v path
_SDPA = None if os.environ.get("DIGPT_TORCH_ATTENTION") == "math" else getattr(F, "scaled_dot_product_attention", None)


def _fp32(device_type):
    """The losses in float32 even inside a bf16 autocast region (2 - 2cos and its means are precision-sensitive)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except (RuntimeError, TypeError, ValueError):
        return contextlib.nullcontext()


class ConfigError(ValueError):
    """A model config the model cannot take; the message names the field."""


class WeightsError(ValueError):
    """Weights that do not fit a model: names every missing, unexpected or misshapen key and the file."""

    def __init__(self, message, missing=(), unexpected=(), mismatched=()):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)


# --- configs (engine/config.ts) ---


def default_taps(depth):
    """[d/2, 2d/3, 5d/6, d] when 6 | d, else the last min(4, d) blocks (1-based)."""
    if depth % 6 == 0:
        return [depth // 2, 2 * depth // 3, 5 * depth // 6, depth]
    n = min(4, depth)
    return list(range(depth - n + 1, depth + 1))


def _int(raw, field, minimum=1):
    v = raw.get(field)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise ConfigError(f"config field {field} must be an integer >= {minimum}, got {json.dumps(v)}")
    return v


def _num(raw, field, default):
    v = raw.get(field, default)
    if v is None:
        v = default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"config field {field} must be a positive number, got {json.dumps(v)}")
    return v


def resolve_model_config(raw):
    """The `model` block of a run's config.json with the defaults filled and every constraint checked (the
    workbench's resolveDigptConfig): a dict in the workbench's key order."""
    if not isinstance(raw, dict):
        raise ConfigError(f"model config must be an object, got {type(raw).__name__}")
    depth = _int(raw, "depth")
    cps = 2 if raw.get("clusters_per_side") is None else _int(raw, "clusters_per_side")
    taps = raw.get("taps")
    taps = default_taps(depth) if taps is None else list(taps)
    c = {
        "img_size": _int(raw, "img_size"),
        "patch_size": _int(raw, "patch_size"),
        "embed_dim": _int(raw, "embed_dim"),
        "depth": depth,
        "num_heads": _int(raw, "num_heads"),
        "mlp_ratio": _num(raw, "mlp_ratio", 4),
        "dec_dim": _int(raw, "dec_dim"),
        "dec_depth": _int(raw, "dec_depth"),
        "dec_heads": _int(raw, "dec_heads"),
        "clusters_per_side": cps,
        "teacher_grid": _int(raw, "teacher_grid"),
        "teacher_dim": _int(raw, "teacher_dim"),
        "taps": taps,
        "block_ln_eps": _num(raw, "block_ln_eps", 1e-6),
        "tap_ln_eps": _num(raw, "tap_ln_eps", 1e-5),
    }
    if cps < 2:
        raise ConfigError("clusters_per_side must be at least 2 (one cluster would leave nothing visible)")
    if c["img_size"] % c["patch_size"]:
        raise ConfigError(f"img_size {c['img_size']} is not divisible by patch_size {c['patch_size']} (img_size)")
    if (c["img_size"] // c["patch_size"]) % cps:
        raise ConfigError(f"image size {c['img_size']} is not divisible by patch_size x clusters_per_side = "
                          f"{c['patch_size']} x {cps} (img_size)")
    if c["teacher_grid"] % cps:
        raise ConfigError(f"teacher_grid {c['teacher_grid']} is not divisible by clusters_per_side {cps}")
    if c["embed_dim"] % c["num_heads"]:
        raise ConfigError(f"embed_dim {c['embed_dim']} is not divisible by num_heads {c['num_heads']}")
    if c["dec_dim"] % c["dec_heads"]:
        raise ConfigError(f"dec_dim {c['dec_dim']} is not divisible by dec_heads {c['dec_heads']}")
    if c["embed_dim"] % 4:
        raise ConfigError(f"embed_dim {c['embed_dim']} must be divisible by 4 (2-D sin-cos embedding)")
    if c["dec_dim"] % 4:
        raise ConfigError(f"dec_dim {c['dec_dim']} must be divisible by 4 (2-D sin-cos embedding)")
    if not taps:
        raise ConfigError("taps must name at least one block")
    for t in taps:
        if not isinstance(t, int) or isinstance(t, bool) or not 1 <= t <= depth:
            raise ConfigError(f"taps entry {json.dumps(t)} is not a block index in 1..{depth}")
    return c


def resolve_vit_config(raw):
    """A timm ViT classifier's config (the workbench's resolveVitConfig)."""
    c = {
        "img_size": _int(raw, "img_size"),
        "patch_size": _int(raw, "patch_size"),
        "embed_dim": _int(raw, "embed_dim"),
        "depth": _int(raw, "depth"),
        "num_heads": _int(raw, "num_heads"),
        "mlp_ratio": _num(raw, "mlp_ratio", 4),
        "num_classes": _int(raw, "num_classes"),
        "global_pool": True if raw.get("global_pool") is None else bool(raw["global_pool"]),
        "ln_eps": _num(raw, "ln_eps", 1e-6),
    }
    if c["img_size"] % c["patch_size"]:
        raise ConfigError(f"img_size {c['img_size']} is not divisible by patch_size {c['patch_size']}")
    if c["embed_dim"] % c["num_heads"]:
        raise ConfigError(f"embed_dim {c['embed_dim']} is not divisible by num_heads {c['num_heads']}")
    return c


# --- geometry (engine/models/geometry.ts), computed in numpy with the engine's own rounding ---


def sincos_2d(dim, grid, cls):
    """MAE's get_2d_sincos_pos_embed, [(1 if cls) + grid*grid, dim] float32: w coordinate first, cls row zeros.
    Rounded as the workbench rounds it (frequencies and angles in float32, sin/cos in float64)."""
    if dim % 4:
        raise ConfigError(f"sin-cos position embedding needs a width divisible by 4, got {dim}")
    q = dim // 4
    omega = (1.0 / 10000.0 ** (np.arange(q, dtype=np.float64) / q)).astype(np.float32).astype(np.float64)
    coords = np.arange(grid, dtype=np.float64)
    ang = (coords[:, None] * omega[None, :]).astype(np.float32).astype(np.float64)  # [grid, q]
    s = np.sin(ang).astype(np.float32)
    co = np.cos(ang).astype(np.float32)
    h = np.repeat(np.arange(grid), grid)  # row r = h*grid + w
    w = np.tile(np.arange(grid), grid)
    emb = np.concatenate([s[w], co[w], s[h], co[h]], axis=1)
    if cls:
        emb = np.concatenate([np.zeros((1, dim), np.float32), emb], axis=0)
    return np.ascontiguousarray(emb, dtype=np.float32)


def cluster_table(grid, clusters_per_side):
    """[K, T] int64: raster index of token t of cluster k (clusters and their tokens in raster order)."""
    side = grid // clusters_per_side
    out = np.zeros((clusters_per_side ** 2, side * side), np.int64)
    for k in range(clusters_per_side ** 2):
        kr, kc = divmod(k, clusters_per_side)
        for t in range(side * side):
            tr, tc = divmod(t, side)
            out[k, t] = (kr * side + tr) * grid + kc * side + tc
    return out


def cluster_mask(visible, tokens_per_cluster):
    """The block-causal mask [(N+1), (N+1)] of 0 / -inf, N = visible * T; cls (last) belongs to the last visible
    cluster: it sees everything and only the last visible cluster sees it."""
    n = visible * tokens_per_cluster
    cid = np.arange(n + 1) // tokens_per_cluster
    cid[n] = visible - 1
    allowed = cid[None, :] <= cid[:, None]
    allowed[:n, n] = cid[:n] == visible - 1
    allowed[n, :] = True
    return np.where(allowed, 0.0, -np.inf).astype(np.float32)


def _bilinear_1d(n_in, n_out):
    w = np.zeros((n_out, n_in), np.float64)
    scale = n_in / n_out
    for o in range(n_out):
        src = max(scale * (o + 0.5) - 0.5, 0.0)
        i0 = min(int(math.floor(src)), n_in - 1)
        i1 = min(i0 + 1, n_in - 1)
        l1 = src - i0
        w[o, i0] += 1 - l1
        w[o, i1] += l1
    return w.astype(np.float32)


def bilinear_matrix(s, t):
    """The resize of an s x s map to t x t (PyTorch bilinear, align_corners=False) as one matrix [t*t, s*s]."""
    w = _bilinear_1d(s, t).astype(np.float64)
    return np.kron(w, w).astype(np.float32)


# --- blocks (timm / MAE names) ---


def _attend(q, k, v, heads, mask):
    """Multi-head attention: q [B, N, C], k and v [B, M, C], additive mask [N, M] or None -> [B, N, C]."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    # [B, N, C] -> [B, heads, N, d]
    q = q.reshape(b, n, heads, d).transpose(1, 2)
    k = k.reshape(b, m, heads, d).transpose(1, 2)
    v = v.reshape(b, m, heads, d).transpose(1, 2)
    if _SDPA is not None:
        o = _SDPA(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype))
    else:
        s = torch.matmul(q * d ** -0.5, k.transpose(-2, -1))
        if mask is not None:
            s = s + mask
        o = torch.matmul(s.softmax(-1), v)
    return o.transpose(1, 2).reshape(b, n, c)


class Attention(nn.Module):
    """Self-attention with a fused qkv Linear (rows q | k | v) and an output proj."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, mask=None):
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        return self.proj(_attend(q, k, v, self.heads, mask))


class CrossAttention(nn.Module):
    """Queries from x, keys and values from a memory through one kv Linear (rows k | v)."""

    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, memory, mask=None):
        k, v = self.kv(memory).chunk(2, dim=-1)
        return self.proj(_attend(self.q(x), k, v, self.heads, mask))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact erf GELU
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN ViT block: x += attn(norm1(x)); x += mlp(norm2(x))."""

    def __init__(self, dim, heads, mlp_ratio, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x, mask=None):
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))


class DecoderBlock(nn.Module):
    """MAE decoder block: q += SelfAttn(LN1(q)); q += CrossAttn(LN2_1(q), LN2_2(memory)); q += MLP(LN2(q))."""

    def __init__(self, dim, heads, mlp_ratio, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn1 = Attention(dim, heads)
        self.norm2_1 = nn.LayerNorm(dim, eps=eps)
        self.norm2_2 = nn.LayerNorm(dim, eps=eps)
        self.attn2 = CrossAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q, memory, mask=None):
        q = q + self.attn1(self.norm1(q), mask)
        q = q + self.attn2(self.norm2_1(q), self.norm2_2(memory), mask)
        return q + self.mlp(self.norm2(q))


class PatchEmbed(nn.Module):
    def __init__(self, patch, dim):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        # [B, 3, H, W] -> [B, C, G, G] -> [B, G*G, C], raster order of patches
        return self.proj(x).flatten(2).transpose(1, 2)


def _init_weights(module, seed):
    """MAE's init: xavier-uniform Linear/conv weights (on the (out, -1) view), zero biases, LayerNorm 1/0, tokens
    N(0, 0.02). Deterministic for a seed (a local generator; the global RNG is left alone)."""
    g = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            if isinstance(owner, nn.LayerNorm):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                p.zero_()
            elif isinstance(owner, (nn.Linear, nn.Conv2d)) and leaf == "weight":
                fan_out = p.shape[0]
                fan_in = p.numel() // fan_out
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                p.uniform_(-bound, bound, generator=g)
            else:  # cls_token, gen_token, dis_token, mask_token
                p.normal_(0.0, 0.02, generator=g)


class _WorkbenchRng:
    """engine/rng.ts's generator (splitmix32-seeded xoshiro128**), for the workbench's weight initialisation: the
    same doubles in the same order, so a fresh model here starts from the workbench's exact weights."""

    M = 0xFFFFFFFF

    def __init__(self, seed):
        M = self.M
        x = int(seed) & M
        s = []
        for _ in range(4):
            x = (x + 0x9E3779B9) & M
            z = x
            z = ((z ^ (z >> 16)) * 0x85EBCA6B) & M
            z = ((z ^ (z >> 13)) * 0xC2B2AE35) & M
            s.append((z ^ (z >> 16)) & M)
        if not any(s):
            s[0] = 1
        self.s = s

    def uniforms(self, n):
        """n draws of uniform() (u32 / 2^32) as float64."""
        M = self.M
        s0, s1, s2, s3 = self.s
        out = [0] * n
        for i in range(n):
            r = (s1 * 5) & M
            out[i] = ((((r << 7) | (r >> 25)) & M) * 9) & M
            t = (s1 << 9) & M
            s2 ^= s0
            s3 ^= s1
            s1 ^= s2
            s0 ^= s3
            s2 ^= t
            s3 = ((s3 << 11) | (s3 >> 21)) & M
        self.s = [s0, s1, s2, s3]
        return np.asarray(out, dtype=np.float64) / 4294967296.0

    def normals(self, n):
        """n draws of normal() (Box-Muller, a draw u <= 1e-12 redrawn, no spare kept)."""
        out = np.empty(n, np.float64)
        for i in range(n):
            u = self.uniforms(1)[0]
            while u <= 1e-12:
                u = self.uniforms(1)[0]
            v = self.uniforms(1)[0]
            out[i] = math.sqrt(-2.0 * math.log(u)) * math.cos(2.0 * math.pi * v)
        return out


def workbench_init_order(model):
    """Parameter names in the order the workbench's ParamSet initialises them (engine/models: encoderSpecs, then
    the objective's head: digptSpecs, kdSpecs, maeSpecs)."""
    c = model.model_cfg

    def block(p, decoder=False):
        subs = (["norm1", "attn1.qkv", "attn1.proj", "norm2_1", "norm2_2", "attn2.q", "attn2.kv", "attn2.proj",
                 "norm2", "mlp.fc1", "mlp.fc2"] if decoder else
                ["norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"])
        return [f"{p}.{x}.{wb}" for x in subs for wb in ("weight", "bias")]

    names = ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token"]
    for i in range(c["depth"]):
        names += block(f"blocks.{i}")
    if isinstance(model, DigptPretrain):
        for r in model.roles:
            names += [f"{r}_tap_norm.weight", f"{r}_tap_norm.bias", f"{r}_enc2dec.weight", f"{r}_enc2dec.bias",
                      f"{r}_token"]
            for l in range(c["dec_depth"]):
                names += block(f"{r}_blocks.{l}", decoder=True)
            names += [f"{r}_norm.weight", f"{r}_norm.bias", f"{r}_pred.weight", f"{r}_pred.bias"]
    elif isinstance(model, KdPretrain):
        names += ["kd_norm.weight", "kd_norm.bias", "kd_pred.weight", "kd_pred.bias"]
    elif isinstance(model, MaePretrain):
        names += ["decoder_embed.weight", "decoder_embed.bias", "mask_token"]
        for l in range(c["dec_depth"]):
            names += block(f"decoder_blocks.{l}")
        names += ["decoder_norm.weight", "decoder_norm.bias", "decoder_pred.weight", "decoder_pred.bias"]
    return names


def _init_workbench(model, seed):
    """The workbench's initialisation (engine/models/params.ts initialValues), value for value: xavier-uniform
    (u*2-1)*sqrt(6/(fan_in+fan_out)) on Linear/conv weights, N(0, 0.02) tokens (Box-Muller), LayerNorm 1/0, zero
    biases, drawn from Rng(seed) in the ParamSet's order, each in PyTorch layout."""
    params = dict(model.named_parameters())
    order = workbench_init_order(model)
    if sorted(order) != sorted(params):
        raise RuntimeError(f"workbench init order does not cover the model: {sorted(set(order) ^ set(params))}")
    rng = _WorkbenchRng(seed)
    with torch.no_grad():
        for name in order:
            p = params[name]
            leaf = name.rsplit(".", 1)[-1]
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            if isinstance(owner, nn.LayerNorm):
                p.fill_(1.0 if leaf == "weight" else 0.0)
            elif leaf == "bias":
                p.zero_()
            elif leaf == "weight":
                fan_out = p.shape[0]
                fan_in = p.numel() // fan_out
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                v = (rng.uniforms(p.numel()) * 2.0 - 1.0) * bound
                p.copy_(torch.from_numpy(v.astype(np.float32).reshape(tuple(p.shape))))
            else:  # cls_token, gen_token, dis_token, mask_token
                v = rng.normals(p.numel()) * 0.02
                p.copy_(torch.from_numpy(v.astype(np.float32).reshape(tuple(p.shape))))


def _cosine_error(p, t):
    """Row-wise cosine of p and t [..., D] (no eps, as D-iGPT's loss) and the error 2 - 2 cos."""
    pn = p / torch.sqrt((p * p).sum(-1, keepdim=True))
    tn = t / torch.sqrt((t * t).sum(-1, keepdim=True))
    cos = (pn * tn).sum(-1)
    return cos, 2 - 2 * cos


def _check_order(order, batch, length, what):
    if order is None or tuple(order.shape) != (batch, length):
        got = None if order is None else list(order.shape)
        raise ValueError(f"{what} has shape {got}, expected [{batch}, {length}]")
    if length and not bool((order.sort(dim=1).values == torch.arange(length, device=order.device)).all()):
        raise ValueError(f"{what} is not a permutation of 0..{length - 1} in every sample")


# --- the student trunk ---


class _PretrainModel(nn.Module):
    """The trunk every objective shares: `patch_embed.proj`, `cls_token`, `blocks.{i}` (canonical names)."""

    objective = None

    def __init__(self, cfg):
        super().__init__()
        self.model_cfg = cfg
        c = cfg
        C = c["embed_dim"]
        self.grid = c["img_size"] // c["patch_size"]
        # --- encoder ---
        self.patch_embed = PatchEmbed(c["patch_size"], C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.blocks = nn.ModuleList(
            Block(C, c["num_heads"], c["mlp_ratio"], c["block_ln_eps"]) for _ in range(c["depth"]))
        # --- constants (buffers, not parameters, not in state_dict) ---
        self.register_buffer("student_pos", torch.from_numpy(sincos_2d(C, self.grid, False)), persistent=False)
        self.register_buffer("img_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    # --- checks ---

    def _check_inputs(self, x, targets):
        c = self.model_cfg
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, c["img_size"], c["img_size"]):
            raise ValueError(f"images have shape {list(x.shape)}, the model expects [B, 3, {c['img_size']}, "
                             f"{c['img_size']}]")
        per = 1 + c["teacher_grid"] ** 2
        if targets is None or tuple(targets.shape) != (x.shape[0], per, c["teacher_dim"]):
            got = None if targets is None else list(targets.shape)
            raise ValueError(f"teacher tokens have shape {got}, the model expects [{x.shape[0]}, {per}, "
                             f"{c['teacher_dim']}] (teacher_grid {c['teacher_grid']}, teacher_dim {c['teacher_dim']})")

    def pos_embed_with_cls(self):
        """The fixed student table with its cls row [1, 1+G*G, C], as the official `pos_embed` holds it."""
        return torch.from_numpy(sincos_2d(self.model_cfg["embed_dim"], self.grid, True)).unsqueeze(0)

    # --- encoder ---

    def embed(self, x):
        """Patch embedding plus the fixed position, raster order: [B, 3, H, W] -> [B, G*G, C]."""
        return self.patch_embed(x) + self.student_pos

    def encode(self, tokens, mask=None, taps=()):
        """Appends cls LAST (its position slot is zeros), runs the blocks under `mask`, no final norm. Returns the
        last block's output [B, L+1, C] and the outputs of the blocks in `taps` (1-based), in that order."""
        b = tokens.shape[0]
        h = torch.cat([tokens, self.cls_token.expand(b, -1, -1)], dim=1)
        tapped = {}
        for i, blk in enumerate(self.blocks):
            h = blk(h, mask)
            if i + 1 in taps:
                tapped[i + 1] = h
        return h, [tapped[t] for t in taps]

    def normalize(self, images01):
        """[0, 1] images -> the student's ImageNet normalisation (what the workbench's crop writes)."""
        return (images01 - self.img_mean) / self.img_std

    def forward(self, images01, order=None, targets=None, normalized=False, return_parts=False):
        """images01 [B, 3, H, W] in [0, 1] (or already normalised with `normalized=True`), order [B, order_length]
        int64, targets [B, 1+tg*tg, Dt] -> dict: loss (differentiable), loss_gen, loss_dis (scalars or None),
        agreement (detached), cluster_error (detached, [B, error_length]); with return_parts also encoder_out,
        pred_gen, pred_dis (predictions before the bilinear resize, cls last)."""
        x = images01 if normalized else self.normalize(images01)
        self._check_inputs(x, targets)
        return self._forward(x, order, targets, return_parts)


class DigptPretrain(_PretrainModel):
    """D-iGPT with both decoders (`digpt`) or one (`gen-only`, `dis-only`). order_length K, error_length K-1."""

    def __init__(self, cfg, objective="digpt"):
        super().__init__(cfg)
        c = cfg
        self.objective = objective
        self.roles = {"digpt": ("gen", "dis"), "gen-only": ("gen",), "dis-only": ("dis",)}[objective]
        C, D = c["embed_dim"], c["dec_dim"]
        cps = c["clusters_per_side"]
        self.k = cps * cps
        self.side = self.grid // cps
        self.t = self.side * self.side
        self.n = (self.k - 1) * self.t
        self.tside = c["teacher_grid"] // cps
        self.order_length = self.k
        self.error_length = self.k - 1
        # --- decoders (canonical names gen_* / dis_*) ---
        for r in self.roles:
            setattr(self, f"{r}_tap_norm", nn.LayerNorm(C, eps=c["tap_ln_eps"]))
            setattr(self, f"{r}_enc2dec", nn.Linear(len(c["taps"]) * C, c["dec_depth"] * D))
            setattr(self, f"{r}_token", nn.Parameter(torch.zeros(1, 1, D)))
            setattr(self, f"{r}_blocks", nn.ModuleList(
                DecoderBlock(D, c["dec_heads"], c["mlp_ratio"], c["block_ln_eps"]) for _ in range(c["dec_depth"])))
            setattr(self, f"{r}_norm", nn.LayerNorm(D, eps=c["block_ln_eps"]))
            setattr(self, f"{r}_pred", nn.Linear(D, c["teacher_dim"]))
        # --- constants ---
        self.register_buffer("decoder_pos", torch.from_numpy(sincos_2d(D, self.grid, True)), persistent=False)
        self.register_buffer("mask", torch.from_numpy(cluster_mask(self.k - 1, self.t)), persistent=False)
        self.register_buffer("student_clusters", torch.from_numpy(cluster_table(self.grid, cps)), persistent=False)
        self.register_buffer("teacher_clusters", torch.from_numpy(cluster_table(c["teacher_grid"], cps)),
                             persistent=False)
        self.register_buffer("resize", torch.from_numpy(bilinear_matrix(self.side, self.tside)), persistent=False)

    def _selected(self, role, order):
        """The clusters a decoder queries / predicts: the NEXT ones (gen) or the visible ones (dis), [B, K-1]."""
        return order[:, 1:] if role == "gen" else order[:, :-1]

    def forward_encoder(self, x, order):
        """The first K-1 clusters in `order` under the block-causal mask, cls last: ([B, N+1, C], taps)."""
        b = x.shape[0]
        emb = self.embed(x)
        idx = self.student_clusters[order[:, :-1]].reshape(b, self.n)  # raster index per sequence position
        tokens = torch.gather(emb, 1, idx.unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        return self.encode(tokens, self.mask, self.model_cfg["taps"])

    def forward_decoder(self, role, taps, order):
        """One decoder from the taps to its predictions [B, N+1, Dt] (cls last)."""
        c = self.model_cfg
        b = order.shape[0]
        D, L = c["dec_dim"], c["dec_depth"]
        norm = getattr(self, f"{role}_tap_norm")
        cat = torch.cat([norm(t) for t in taps], dim=-1)  # one shared LayerNorm, [B, N+1, taps*C]
        # [B, N+1, L*D] -> [B, N+1, D, L]: the memory of decoder layer l is feature c*L + l
        memory = getattr(self, f"{role}_enc2dec")(cat).view(b, self.n + 1, D, L)
        pos_idx = 1 + self.student_clusters[self._selected(role, order)].reshape(b, self.n)
        pos_idx = torch.cat([pos_idx, pos_idx.new_zeros(b, 1)], dim=1)  # cls slot last
        q = self.decoder_pos[pos_idx] + getattr(self, f"{role}_token")
        for l, blk in enumerate(getattr(self, f"{role}_blocks")):
            q = blk(q, memory[..., l], self.mask)
        return getattr(self, f"{role}_pred")(getattr(self, f"{role}_norm")(q))

    def targets_for(self, role, targets, order):
        """The selected clusters' teacher tokens, then teacher cls: [B, (K-1)*ts*ts + 1, Dt]."""
        b = order.shape[0]
        ts2 = self.tside * self.tside
        idx = 1 + self.teacher_clusters[self._selected(role, order)].reshape(b, (self.k - 1) * ts2)
        idx = torch.cat([idx, idx.new_zeros(b, 1)], dim=1)
        return torch.gather(targets, 1, idx.unsqueeze(-1).expand(-1, -1, targets.shape[-1]))

    def resized(self, pred):
        """Each cluster's s x s predictions onto its ts x ts teacher tokens, cls kept last."""
        b, _, dt = pred.shape
        body = pred[:, : self.n].reshape(b, self.k - 1, self.t, dt)
        if self.side != self.tside:
            body = torch.matmul(self.resize, body)  # [ts*ts, T] @ [B, K-1, T, Dt]
        return torch.cat([body.reshape(b, -1, dt), pred[:, self.n:]], dim=1)

    def decoder_loss(self, pred, target):
        cos, err = _cosine_error(self.resized(pred), target)  # [B, rows]
        b = err.shape[0]
        ts2 = self.tside * self.tside
        cluster_error = err[:, : (self.k - 1) * ts2].reshape(b, self.k - 1, ts2).mean(-1)
        return err.mean(), cluster_error, cos.mean()

    def _forward(self, x, order, targets, return_parts):
        b = x.shape[0]
        order = order.to(device=x.device, dtype=torch.long) if order is not None else None
        _check_order(order, b, self.k, "cluster order")
        out, taps = self.forward_encoder(x, order)
        res = {"loss_gen": None, "loss_dis": None}
        parts = {"encoder_out": out}
        total = None
        lead = None
        for role in self.roles:
            pred = self.forward_decoder(role, taps, order)
            with _fp32(x.device.type):
                loss, cerr, agree = self.decoder_loss(pred.float(), self.targets_for(role, targets.float(), order))
            res[f"loss_{role}"] = loss
            parts[f"pred_{role}"] = pred
            total = loss if total is None else total + loss
            if lead is None:
                lead = (cerr, agree)
        res["loss"] = total
        res["agreement"] = lead[1].detach()
        res["cluster_error"] = lead[0].detach()
        if return_parts:
            res.update(parts)
        return res


class KdPretrain(_PretrainModel):
    """Feature distillation: every patch, raster order, cls last, no mask; `kd_norm` + `kd_pred` per token; patch
    predictions resized G -> teacher grid; loss mean 2 - 2cos over all 1 + tg*tg tokens. Reported as loss_dis.
    order_length 0 (order unused), error_length 1."""

    objective = "kd"

    def __init__(self, cfg):
        super().__init__(cfg)
        c = cfg
        self.order_length = 0
        self.error_length = 1
        self.kd_norm = nn.LayerNorm(c["embed_dim"], eps=c["block_ln_eps"])
        self.kd_pred = nn.Linear(c["embed_dim"], c["teacher_dim"])
        self.register_buffer("resize", torch.from_numpy(bilinear_matrix(self.grid, c["teacher_grid"])),
                             persistent=False)

    def _forward(self, x, order, targets, return_parts):
        c = self.model_cfg
        gg = self.grid ** 2
        h, _ = self.encode(self.embed(x))
        pred = self.kd_pred(self.kd_norm(h))  # [B, GG+1, Dt], cls last
        with _fp32(x.device.type):
            p32 = pred.float()
            body = p32[:, :gg]
            if self.grid != c["teacher_grid"]:
                body = torch.matmul(self.resize, body)
            # the teacher's layout, cls first
            cos, err = _cosine_error(torch.cat([p32[:, gg:], body], dim=1), targets.float())
            loss = err.mean()
        res = {"loss": loss, "loss_gen": None, "loss_dis": loss, "agreement": cos.mean().detach(),
               "cluster_error": err.mean(1, keepdim=True).detach()}
        if return_parts:
            res.update(encoder_out=h, pred_gen=None, pred_dis=pred)
        return res


class MaePretrain(_PretrainModel):
    """MAE with teacher targets: per sample `order` is a permutation of the G*G patches whose first `visible` are
    encoded (shuffled order, cls last, no mask); an MAE decoder (`decoder_embed`, `mask_token`, `decoder_blocks`,
    `decoder_norm`, `decoder_pred`) predicts every patch in raster order; the loss is the mean 2 - 2cos over the
    masked patches (the 0/1 mask resized with the predictions onto the teacher grid); cls not in the loss. Reported
    as loss_dis. order_length G*G, error_length 1."""

    objective = "mae"

    def __init__(self, cfg, mask_ratio=0.75):
        super().__init__(cfg)
        c = cfg
        gg = self.grid ** 2
        D = c["dec_dim"]
        self.visible = int(math.floor(gg * (1 - mask_ratio) + 1e-9))
        if not (0 < mask_ratio < 1) or self.visible < 1 or self.visible >= gg:
            raise ConfigError(f"mask ratio {mask_ratio} leaves {self.visible} of {gg} patches visible; it must "
                              f"leave 1..{gg - 1}")
        self.order_length = gg
        self.error_length = 1
        self.decoder_embed = nn.Linear(c["embed_dim"], D)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.decoder_blocks = nn.ModuleList(
            Block(D, c["dec_heads"], c["mlp_ratio"], c["block_ln_eps"]) for _ in range(c["dec_depth"]))
        self.decoder_norm = nn.LayerNorm(D, eps=c["block_ln_eps"])
        self.decoder_pred = nn.Linear(D, c["teacher_dim"])
        self.register_buffer("decoder_pos", torch.from_numpy(sincos_2d(D, self.grid, False)), persistent=False)
        self.register_buffer("resize", torch.from_numpy(bilinear_matrix(self.grid, c["teacher_grid"])),
                             persistent=False)

    def _forward(self, x, order, targets, return_parts):
        c = self.model_cfg
        b = x.shape[0]
        gg = self.grid ** 2
        v = self.visible
        order = order.to(device=x.device, dtype=torch.long) if order is not None else None
        _check_order(order, b, gg, "mae patch order")
        emb = self.embed(x)
        kept = torch.gather(emb, 1, order[:, :v].unsqueeze(-1).expand(-1, -1, emb.shape[-1]))
        h, _ = self.encode(kept)  # [B, V+1, C]
        d = self.decoder_embed(h)
        D = d.shape[-1]
        shuffled = torch.cat([d[:, :v], self.mask_token.expand(b, gg - v, -1)], dim=1)
        inv = torch.argsort(order, dim=1)  # MAE's ids_restore: raster row r is shuffled row inv[r]
        raster = torch.gather(shuffled, 1, inv.unsqueeze(-1).expand(-1, -1, D))
        q = torch.cat([raster + self.decoder_pos, d[:, v:]], dim=1)  # cls last, no position
        for blk in self.decoder_blocks:
            q = blk(q)
        pred = self.decoder_pred(self.decoder_norm(q))  # [B, GG+1, Dt]
        with _fp32(x.device.type):
            m = torch.zeros(b, gg, device=x.device, dtype=torch.float32)
            m.scatter_(1, order[:, v:], 1.0)  # 1 at the masked patches
            body = pred.float()[:, :gg]
            if self.grid != c["teacher_grid"]:
                body = torch.matmul(self.resize, body)
                m = m @ self.resize.t()
            cos, err = _cosine_error(body, targets.float()[:, 1:])
            per_sample = m.sum(1)
            total = per_sample.sum()
            werr = err * m
            loss = werr.sum() / total
            res = {"loss": loss, "loss_gen": None, "loss_dis": loss,
                   "agreement": ((cos * m).sum() / total).detach(),
                   "cluster_error": (werr.sum(1) / per_sample).unsqueeze(1).detach()}
        if return_parts:
            res.update(encoder_out=h, pred_gen=None, pred_dis=pred)
        return res


def build_pretrain(model_cfg, objective, seed=0, mask_ratio=0.75, init="workbench"):
    """The pretraining model of a run: `model_cfg` is config.json's `model` block (defaults filled, checked),
    `objective` one of digpt, gen-only, dis-only, kd, mae, `seed` config.json's seed.

    init="workbench" (default): the workbench's own initial weights for that seed, value for value (its generator in
    pure Python: about 0.5 s per million parameters, a minute for ViT-B with 1024-wide decoders); init="fast": the
    same distributions from torch's generator (for models that load weights next, or when the start need not match).

    `state_dict()` keys are the workbench's model.safetensors keys; the sin-cos tables, the mask and the bilinear
    maps are non-persistent buffers (not parameters, so `model.parameters()` is exactly the trained set)."""
    cfg = resolve_model_config(model_cfg)
    if objective in ("digpt", "gen-only", "dis-only"):
        m = DigptPretrain(cfg, objective)
    elif objective == "kd":
        m = KdPretrain(cfg)
    elif objective == "mae":
        m = MaePretrain(cfg, mask_ratio)
    else:
        raise ConfigError(f"unknown pretraining objective {json.dumps(objective)}; use {', '.join(OBJECTIVES)}")
    if init == "workbench":
        _init_workbench(m, seed)
    elif init == "fast":
        _init_weights(m, seed)
    else:
        raise ConfigError(f"init {init!r}: use 'workbench' or 'fast'")
    return m


# --- the timm ViT classifier (engine/models/vit.ts) ---


class VitClassifier(nn.Module):
    """timm names: patch_embed.proj, cls_token, pos_embed (learned, from sin-cos), blocks, fc_norm (global pool) or
    norm (cls token), head. Inputs are normalised images [B, 3, H, W]."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = c = cfg
        C = c["embed_dim"]
        g = c["img_size"] // c["patch_size"]
        self.patch_embed = PatchEmbed(c["patch_size"], C)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, C))
        self.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(C, g, True)).unsqueeze(0))
        self.blocks = nn.ModuleList(Block(C, c["num_heads"], c["mlp_ratio"], c["ln_eps"]) for _ in range(c["depth"]))
        if c["global_pool"]:
            self.fc_norm = nn.LayerNorm(C, eps=c["ln_eps"])
        else:
            self.norm = nn.LayerNorm(C, eps=c["ln_eps"])
        self.head = nn.Linear(C, c["num_classes"])

    def encode(self, x):
        """Tokens after the blocks, [B, 1+G*G, C], cls FIRST."""
        t = self.patch_embed(x)
        h = torch.cat([self.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + self.pos_embed
        for blk in self.blocks:
            h = blk(h)
        return h

    def final_norm(self):
        return self.fc_norm if self.cfg["global_pool"] else self.norm

    def features(self, x):
        h = self.encode(x)
        if self.cfg["global_pool"]:
            return self.fc_norm(h[:, 1:].mean(1))
        return self.norm(h[:, 0])

    def tokens(self, x):
        """Every token through the final norm, cls first: what a classifier gives as a teacher."""
        return self.final_norm()(self.encode(x))

    def forward(self, x):
        return self.head(self.features(x))


def build_classifier(cfg):
    """A timm-named ViT classifier from its config (img_size, patch_size, embed_dim, depth, num_heads, mlp_ratio,
    num_classes, global_pool, ln_eps)."""
    m = VitClassifier(resolve_vit_config(cfg))
    pos = m.pos_embed.detach().clone()
    _init_weights(m, 0)
    with torch.no_grad():
        m.pos_embed.copy_(pos)
    return m


# --- loading and saving ---


def _names(names, limit=12):
    names = list(names)
    return ", ".join(names) if len(names) <= limit else ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def load_strict(module, tensors, label):
    """Loads tensors (dict name -> array/tensor, PyTorch layouts) into `module` by its state_dict names; refuses
    missing and unexpected keys and wrong shapes together, naming them and `label` (the file)."""
    sd = module.state_dict()
    missing = [k for k in sd if k not in tensors]
    unexpected = [k for k in tensors if k not in sd]
    mismatched = [f"{k} is {list(np.shape(tensors[k]))}, the model needs {list(sd[k].shape)}"
                  for k in sd if k in tensors and tuple(np.shape(tensors[k])) != tuple(sd[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        if mismatched:
            parts.append(f"shape mismatches: {_names(mismatched, 6)}")
        raise WeightsError(f"{label}: {'; '.join(parts)}", missing, unexpected, mismatched)
    new = {}
    for k, ref in sd.items():
        v = tensors[k]
        t = v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))
        new[k] = t.to(dtype=ref.dtype)
    module.load_state_dict(new, strict=True)


def load_workbench_state(model, path):
    """Loads a workbench model.safetensors (canonical names) strictly; a WeightsError names the file and every
    missing key, unexpected key and shape mismatch (and the file's objective when it differs from the model's)."""
    with SafetensorsFile(path) as f:
        meta = dict(f.metadata)
        tensors = {k: f.get(k) for k in f.keys()}
    obj = meta.get("objective")
    label = str(path)
    if obj and getattr(model, "objective", None) and obj != model.objective:
        label += f" (objective {obj}, the model is {model.objective})"
    load_strict(model, tensors, label)
    return meta


def _js_number(x):
    """A number as JavaScript's JSON.stringify writes it (so config strings match the workbench's byte for byte)."""
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    x = float(x)
    if not math.isfinite(x):
        return "null"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e21:
        return str(int(x))
    r = repr(x)
    sign = "-" if r.startswith("-") else ""
    r = r.lstrip("-")
    if "e" in r:
        mant, e = r.split("e")
        e = int(e)
    else:
        mant, e = r, 0
    if "." in mant:
        ip, fp = mant.split(".")
    else:
        ip, fp = mant, ""
    digits = (ip + fp).lstrip("0")
    lead_zeros = len(ip + fp) - len((ip + fp).lstrip("0"))
    n = len(ip) + e - lead_zeros  # decimal point after n digits
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        s = digits + "0" * (n - k)
    elif 0 < n <= 21:
        s = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        s = "0." + "0" * (-n) + digits
    else:
        ex = n - 1
        s = digits[0] + ("." + digits[1:] if k > 1 else "") + "e" + ("+" if ex >= 0 else "-") + str(abs(ex))
    return sign + s


def js_json(v):
    """JSON as JavaScript's JSON.stringify(v) writes it: compact, numbers in JS form, non-ASCII kept."""
    if isinstance(v, dict):
        return "{" + ",".join(json.dumps(str(k), ensure_ascii=False) + ":" + js_json(x) for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(js_json(x) for x in v) + "]"
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if v is None:
        return "null"
    return _js_number(v)


def save_workbench_state(model, path, metadata=None):
    """Writes the model as a workbench model.safetensors: F32 tensors under the canonical names and the workbench's
    `__metadata__` {kind: digpt_workbench, config: the model block as JSON, objective}; `metadata` adds or replaces
    entries (non-string values are written as JSON). Atomic (temp file + rename)."""
    meta = {"kind": "digpt_workbench", "config": js_json(model.model_cfg), "objective": model.objective}
    for k, v in (metadata or {}).items():
        meta[k] = v if isinstance(v, str) else js_json(v)
    save_torch(path, {k: v.float() for k, v in model.state_dict().items()}, meta)


# --- official D-iGPT names ---

_OFFICIAL_RULES = [
    (re.compile(r"^gen_tap_norm\."), "kd_enc_norm.0."),
    (re.compile(r"^dis_tap_norm\."), "ar_enc_norm.0."),
    (re.compile(r"^gen_enc2dec\."), "kd_enc2dec."),
    (re.compile(r"^dis_enc2dec\."), "ar_enc2dec."),
    (re.compile(r"^gen_"), "ar_"),
    (re.compile(r"^dis_"), "kd_"),
]
_OFFICIAL_BUFFERS = ("pos_embed", "decoder_pos_embed", "mask")
_TAP_COPY = re.compile(r"^(ar|kd)_enc_norm\.([1-9]\d*)\.(weight|bias)$")
TAP_NORM_COPIES = 4


def official_name(canonical):
    """The official checkpoint name of a canonical D-iGPT parameter. The official code wires its generative (ar_)
    decoder to the memory of kd_enc_norm/kd_enc2dec and its discriminative (kd_) decoder to ar_enc_norm/ar_enc2dec:
    kept, so `gen_tap_norm` is `kd_enc_norm.0` and `gen_enc2dec` is `kd_enc2dec`."""
    for rx, to in _OFFICIAL_RULES:
        if rx.match(canonical):
            return rx.sub(to, canonical, count=1)
    return canonical


def load_official_state(model, tensors, label="official weights"):
    """Loads official names (dict name -> array) into a D-iGPT model. The fixed buffers (pos_embed,
    decoder_pos_embed, mask) are computed, not loaded; the extra copies of each shared tap norm must equal copy 0."""
    ours = {}
    unexpected = []
    used = set()
    names = {official_name(k): k for k in model.state_dict()}
    for k, v in tensors.items():
        if k in names:
            ours[names[k]] = v
            used.add(k)
        elif k in _OFFICIAL_BUFFERS or _TAP_COPY.match(k):
            continue
        else:
            unexpected.append(k)
    for k in tensors:
        m = _TAP_COPY.match(k)
        if m:
            first = f"{m.group(1)}_enc_norm.0.{m.group(3)}"
            if first not in tensors or not np.array_equal(np.asarray(tensors[k]), np.asarray(tensors[first])):
                raise WeightsError(f"{label}: {k} differs from {first}; the official model shares one norm across taps")
    missing = [o for o in names if o not in tensors]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_names(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_names(unexpected)}")
        raise WeightsError(f"{label}: {'; '.join(parts)}", missing, unexpected)
    load_strict(model, ours, label)


def official_state(model):
    """A D-iGPT model's weights under the official names (4 copies of each shared tap norm, fixed buffers included),
    as CPU tensors."""
    out = {}
    for k, v in model.state_dict().items():
        o = official_name(k)
        m = re.match(r"^(ar|kd)_enc_norm\.0\.(weight|bias)$", o)
        if m:
            for i in range(TAP_NORM_COPIES):
                out[f"{m.group(1)}_enc_norm.{i}.{m.group(2)}"] = v.detach().cpu().clone()
        else:
            out[o] = v.detach().cpu().clone()
    c = model.model_cfg
    out["pos_embed"] = model.pos_embed_with_cls()
    out["decoder_pos_embed"] = torch.from_numpy(sincos_2d(c["dec_dim"], model.grid, True)).unsqueeze(0)
    out["mask"] = model.mask.detach().cpu().clone()
    return out
