"""The training images and the draws that turn them into micro-batches, exactly as the workbench makes them.

- `load_manifest` reads a bundle's dataset.json (scaleout/INTERFACE.md) and `verify_files` checks every file it
  lists (size and sha256) and that every file the source references is listed; a mismatch is a DatasetError naming
  the file. The dataset folder is `--data-root`, else `$DIGPT_DATA_ROOT`, else the manifest's `root`.
- `load_images` decodes the train split at the cache side (`cache_side_for(img_size)`, app/datasets/load.ts):
  IDX files (gzipped or not) through a port of app/datasets/resize.ts's Lanczos-3 that gives the workbench's bytes;
  image files through PIL (imported lazily): EXIF orientation, alpha flattened onto black, resized to cover the
  square with Lanczos and centre-cropped, as the workbench asks sharp to do. sharp's resize is not bit-identical to
  PIL's, so a run on an image-folder dataset sees pixels within a grey level or so of the workbench's (the draws are
  still the same); an IDX dataset gives identical bytes.
- `DataStream` is app/worker/training-run.ts's (a pretraining epoch is one pass over the images, its order drawn by
  the run's Rng when the pass begins); `draw_crop`, `crop_resize` are app/worker/augment.ts's RandomResizedCrop
  and bicubic resize, and `draw_orders` is engine/train/pretrain.ts's cluster orders. `draw_micro_batch` draws one
  global micro-batch in the workbench's order (per image: its index, then its crop; then every image's cluster
  order), so every rank draws the same batch and keeps its own slice (`shard_bounds`): state.json means the same
  thing on any number of ranks.
"""
import gzip
import json
import math
import os
import stat as _stat
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .files import sha256 as _sha256
from .rng import Rng

__all__ = [
    "DatasetError",
    "DatasetManifest",
    "load_manifest",
    "verify_files",
    "cache_side_for",
    "read_idx",
    "resize_grey_to_rgb",
    "load_images",
    "ImageSet",
    "DataStream",
    "CropBox",
    "draw_crop",
    "crop_resize",
    "draw_orders",
    "MicroBatch",
    "draw_micro_batch",
    "shard_bounds",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DatasetError(Exception):
    """A dataset that cannot be used as the manifest describes it; the message names the file."""


# --- the manifest ---


class DatasetManifest:
    """dataset.json, read and checked: `root` (the folder in use), `classes`, `split`, `source`, `files`."""

    def __init__(self, path, raw, root):
        self.path = path
        self.raw = raw
        self.root = root
        self.classes = list(raw.get("classes") or [])
        self.split = raw.get("split", "train")
        self.source = raw["source"]
        self.files = raw["files"]

    @property
    def count(self):
        """Images of the split (the length of an epoch's order)."""
        s = self.source
        if s["kind"] == "idx":
            return len(s["indices"]) if s.get("indices") is not None else int(s["count"])
        return len(s["items"])

    def referenced(self):
        """The files (relative to the root) the source reads."""
        s = self.source
        if s["kind"] == "idx":
            return [s["images"], s["labels"]]
        return [it["path"] for it in s["items"]]

    def abs(self, rel):
        return os.path.join(self.root, *rel.split("/"))


def _fail(path, what):
    raise DatasetError(f"{path}: {what}")


def load_manifest(path, data_root=None):
    """Reads and checks dataset.json; the root is `data_root`, else $DIGPT_DATA_ROOT, else the manifest's."""
    path = os.path.abspath(path)
    try:
        with open(path, "r", encoding="utf-8") as f:
            raw = json.load(f)
    except FileNotFoundError:
        _fail(path, "no such file (the bundle's dataset manifest)")
    except ValueError as e:
        _fail(path, f"not valid JSON ({e})")
    if not isinstance(raw, dict) or raw.get("format") != "digpt-dataset-manifest":
        _fail(path, 'not a dataset manifest (format is not "digpt-dataset-manifest")')
    if raw.get("version") != 1:
        _fail(path, f"manifest version {raw.get('version')!r} is not supported (this trainer reads version 1)")
    src = raw.get("source")
    if not isinstance(src, dict) or src.get("kind") not in ("idx", "files"):
        _fail(path, 'source must be {"kind":"idx",...} or {"kind":"files",...}')
    if src["kind"] == "idx":
        for k in ("images", "labels"):
            if not isinstance(src.get(k), str):
                _fail(path, f"source.{k} must be a file name")
        for k in ("count", "rows", "cols"):
            if not isinstance(src.get(k), int) or src[k] < 1:
                _fail(path, f"source.{k} must be a positive integer")
        ind = src.get("indices")
        if ind is not None and (not isinstance(ind, list) or
                                not all(isinstance(i, int) and 0 <= i < src["count"] for i in ind)):
            _fail(path, f"source.indices must be null or integers in [0, {src['count']})")
    else:
        items = src.get("items")
        if not isinstance(items, list) or not all(isinstance(it, dict) and isinstance(it.get("path"), str)
                                                  for it in items):
            _fail(path, 'source.items must be a list of {"path","label"}')
    files = raw.get("files")
    if not isinstance(files, dict):
        _fail(path, "files must be an object of {bytes, sha256} by file name")
    for name, info in files.items():
        if (not isinstance(info, dict) or not isinstance(info.get("bytes"), int)
                or not isinstance(info.get("sha256"), str)):
            _fail(path, f'files["{name}"] must be {{"bytes": int, "sha256": hex}}')
    root = data_root or os.environ.get("DIGPT_DATA_ROOT") or raw.get("root")
    if not root:
        _fail(path, "no dataset root: the manifest has none; pass --data-root or set DIGPT_DATA_ROOT")
    m = DatasetManifest(path, raw, os.path.abspath(root))
    if m.count < 1:
        _fail(path, "the split has no images")
    return m



def _check_file(m, rel, info, hashes):
    p = m.abs(rel)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return f"{p}: missing (dataset root {m.root}; pass --data-root or set DIGPT_DATA_ROOT if the data moved)"
    except OSError as e:
        return f"{p}: unreadable ({e.strerror})"
    if not _stat.S_ISREG(st.st_mode):
        return f"{p}: not a regular file"
    if st.st_size != info["bytes"]:
        return f"{p}: {st.st_size} bytes, the manifest {m.path} says {info['bytes']}"
    if hashes:
        try:
            got = _sha256(p)
        except OSError as e:
            return f"{p}: unreadable ({e.strerror})"
        if got != info["sha256"].lower():
            return f"{p}: sha256 {got} differs from the manifest's {info['sha256']} ({m.path}); the file changed"
    return None


def verify_files(m, hashes=True, threads=None):
    """Checks every listed file (size, and sha256 unless `hashes` is False) and that the source's files are listed.

    Raises DatasetError naming the first bad file (and how many others are bad).
    """
    missing = [r for r in m.referenced() if r not in m.files]
    if missing:
        raise DatasetError(f"{m.abs(missing[0])}: the dataset reads it but {m.path} does not list it"
                           + (f" ({len(missing) - 1} more like it)" if len(missing) > 1 else ""))
    names = sorted(m.files)
    threads = threads or min(8, max(1, len(names)))
    if len(names) <= 2:
        bad = [_check_file(m, n, m.files[n], hashes) for n in names]
    else:
        with ThreadPoolExecutor(max_workers=threads) as ex:
            bad = list(ex.map(lambda n: _check_file(m, n, m.files[n], hashes), names))
    bad = [b for b in bad if b]
    if bad:
        more = f" ({len(bad) - 1} other file(s) fail too)" if len(bad) > 1 else ""
        raise DatasetError(bad[0] + more)


# --- decoding ---


def cache_side_for(resolution, margin=1.14):
    """The workbench's cache side: ceil(resolution * 1.14) (224 -> 256), room for random crops."""
    return math.ceil(resolution * margin - 1e-9)


def read_idx(path):
    """An IDX file's dims and uint8 data (gunzipped when the name ends in .gz), checked like the workbench's reader."""
    name = os.path.basename(path)
    with open(path, "rb") as f:
        raw = f.read()
    if path.lower().endswith(".gz"):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise DatasetError(f"{path}: gzip error: {e}") from None
    if len(raw) < 4:
        raise DatasetError(f"{path}: file too short for an IDX header")
    magic = int.from_bytes(raw[0:4], "big")
    if magic >> 16 != 0:
        raise DatasetError(f"{path}: not an IDX file (magic 0x{magic:08x})")
    if (magic >> 8) & 0xFF != 0x08:
        raise DatasetError(f"{path}: IDX data type is not uint8 (magic 0x{magic:08x})")
    nd = magic & 0xFF
    if nd < 1 or nd > 4:
        raise DatasetError(f"{name}: IDX with {nd} dimensions")
    hb = 4 + 4 * nd
    if len(raw) < hb:
        raise DatasetError(f"{path}: file too short for an IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    n = 1
    for d in dims:
        n *= d
    have = len(raw) - hb
    if have < n:
        raise DatasetError(f"{path}: truncated ({have} of {n} data bytes)")
    if have > n:
        raise DatasetError(f"{path}: {have - n} bytes after the data")
    return dims, np.frombuffer(raw, dtype=np.uint8, offset=hb)


def _lanczos3(x):
    if x == 0:
        return 1.0
    if x <= -3 or x >= 3:
        return 0.0
    px = math.pi * x
    return (3 * math.sin(px) * math.sin(px / 3)) / (px * px)


def _lanczos_taps(in_size, out_size):
    """resize.ts's taps: start, count and float32 weights [out, width] (zero beyond count)."""
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = 3 * filter_scale
    width = math.ceil(support) * 2 + 1
    start = np.zeros(out_size, np.int64)
    count = np.zeros(out_size, np.int64)
    weights = np.zeros((out_size, width), np.float32)
    for o in range(out_size):
        centre = (o + 0.5) * scale
        lo = max(0, math.floor(centre - support))
        hi = min(in_size, math.ceil(centre + support))
        total = 0.0
        ws = []
        for i in range(lo, hi):
            w = _lanczos3((i + 0.5 - centre) / filter_scale)
            ws.append(float(np.float32(w)))  # stored in a Float32Array
            total += w  # the sum is of the double values
        for t, w in enumerate(ws):
            weights[o, t] = np.float32(w / total)
        start[o] = lo
        count[o] = hi - lo
    return start, count, weights


def resize_grey_to_rgb(data, rows, cols, side):
    """app/datasets/resize.ts's resizeGreyToRgb for n grey images [n, rows, cols] -> [n, side, side, 3] uint8.

    The same double sums in the same order, the same float32 rounding of the intermediate and of the weights, and
    JavaScript's Math.round: the bytes equal the workbench's.
    """
    data = np.asarray(data, np.uint8).reshape(-1, rows, cols)
    n = data.shape[0]
    out = np.empty((n, side, side, 3), np.uint8)
    if rows == side and cols == side:
        out[...] = data[..., None]
        return out
    sx, cx, wx = _lanczos_taps(cols, side)
    sy, cy, wy = _lanczos_taps(rows, side)
    wx64 = wx.astype(np.float64)
    wy64 = wy.astype(np.float64)
    for a in range(0, n, 1000):
        img = data[a:a + 1000].astype(np.float64)  # [m, rows, cols]
        acc = np.zeros((img.shape[0], rows, side), np.float64)
        for t in range(wx.shape[1]):
            idx = np.minimum(sx + t, cols - 1)  # taps past `count` have weight 0: adding 0 changes nothing
            acc += wx64[:, t] * img[:, :, idx]
        tmp = acc.astype(np.float32).astype(np.float64)  # the Float32Array between the passes
        acc = np.zeros((img.shape[0], side, side), np.float64)
        for t in range(wy.shape[1]):
            idx = np.minimum(sy + t, rows - 1)
            acc += wy64[:, t][None, :, None] * tmp[:, idx, :]
        fl = np.floor(acc)
        v = fl + (acc - fl >= 0.5)  # Math.round: halves go up
        v = np.where(acc <= 0, 0, np.where(acc >= 255, 255, v))
        out[a:a + 1000] = v.astype(np.uint8)[..., None]
    return out


def _decode_file(path, side):
    """An image file as [side, side, 3] uint8: EXIF orientation, alpha onto black, cover-resize (Lanczos), centre."""
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise DatasetError(f"{path}: decoding image files needs PIL (pip install pillow, or apt install "
                           "python3-pil); IDX datasets need nothing") from None
    try:
        with Image.open(path) as im:
            im.seek(0)
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                bg = Image.new("RGBA", im.size, (0, 0, 0, 255))
                im = Image.alpha_composite(bg, im)
            im = im.convert("RGB")
            lanczos = getattr(Image, "Resampling", Image).LANCZOS
            im = ImageOps.fit(im, (side, side), method=lanczos, centering=(0.5, 0.5))
            a = np.asarray(im, dtype=np.uint8)
    except DatasetError:
        raise
    except Exception as e:  # PIL raises many kinds
        raise DatasetError(f"{path}: decode error: {e}") from None
    if a.shape != (side, side, 3):
        raise DatasetError(f"{path}: decode error: got {a.shape}, wanted {(side, side, 3)}")
    return a


class ImageSet:
    """The split's images at one side, RGB uint8 HWC: `count`, `side`, `get(i)`, `labels`.

    IDX images and small image-folder datasets are held in memory; a larger folder dataset (over `preload_bytes`) is
    decoded image by image when drawn, so a rank decodes only the images of its own slices.
    """

    def __init__(self, count, side, pixels=None, paths=None, labels=None):
        self.count = count
        self.side = side
        self.pixels = pixels
        self.paths = paths
        self.labels = labels

    def get(self, i):
        if self.pixels is not None:
            return self.pixels[i]
        return _decode_file(self.paths[i], self.side)


def load_images(m, side, preload_bytes=2 << 30):
    """The manifest's split as an ImageSet at `side` (the workbench's cache side for the run's img_size)."""
    s = m.source
    if s["kind"] == "idx":
        ipath = m.abs(s["images"])
        dims, data = read_idx(ipath)
        if len(dims) != 3 or dims[0] != s["count"] or dims[1] != s["rows"] or dims[2] != s["cols"]:
            raise DatasetError(f"{ipath}: its size changed (dims {dims}, the manifest says "
                               f"{[s['count'], s['rows'], s['cols']]})")
        lpath = m.abs(s["labels"])
        ldims, labels = read_idx(lpath)
        if ldims[0] != s["count"]:
            raise DatasetError(f"{lpath}: {ldims[0]} labels for {s['count']} images")
        ind = s.get("indices")
        pick = np.arange(s["count"]) if ind is None else np.asarray(ind, np.int64)
        # resize only the split's images: each image is resized on its own, so this equals resizing all and picking
        grey = data.reshape(s["count"], s["rows"], s["cols"])[pick]
        px = resize_grey_to_rgb(grey, s["rows"], s["cols"], side)
        return ImageSet(len(pick), side, pixels=px, labels=labels[pick].astype(np.int64))
    items = s["items"]
    paths = [m.abs(it["path"]) for it in items]
    labels = np.asarray([int(it.get("label", -1)) for it in items], np.int64)
    if len(items) * side * side * 3 <= preload_bytes:
        px = np.empty((len(items), side, side, 3), np.uint8)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as ex:
            for i, a in enumerate(ex.map(lambda p: _decode_file(p, side), paths)):
                px[i] = a
        return ImageSet(len(items), side, pixels=px, labels=labels)
    return ImageSet(len(items), side, paths=paths, labels=labels)


# --- the data stream ---


class DataStream:
    """training-run.ts's DataStream for pretraining (an epoch is one pass): step, epoch, cursor, order, Rng."""

    def __init__(self, count, seed):
        self.count = count
        self.rng = Rng(seed)
        self.step = 0
        self.epoch = 0
        self.cursor = 0
        self.order = []
        self._start_epoch(0)

    def next(self):
        """The next image's index (a pass that ends starts the next epoch on a fresh order)."""
        if self.cursor >= len(self.order):
            self._start_epoch(self.epoch + 1)
        i = self.order[self.cursor]
        self.cursor += 1
        return i

    def end_step(self):
        self.step += 1

    def snapshot(self):
        """state.json's object, in the workbench's key order."""
        return {"step": self.step, "epoch": self.epoch, "cursor": self.cursor, "order": list(self.order),
                "rng": self.rng.state}

    def restore(self, state, where="state.json"):
        for k in ("step", "epoch", "cursor", "order", "rng"):
            if k not in state:
                raise ValueError(f"{where}: no {k}")
        order = [int(v) for v in state["order"]]
        if len(order) != self.count:
            raise ValueError(f"{where}: the epoch's order has {len(order)} images but the dataset has {self.count}; "
                             "the run was trained on another dataset (or another split)")
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.cursor = int(state["cursor"])
        self.order = order
        self.rng = Rng(state["rng"])

    def _start_epoch(self, epoch):
        self.epoch = epoch
        self.cursor = 0
        self.order = self.rng.permutation(self.count).tolist()


# --- augmentation (app/worker/augment.ts) ---


class CropBox:
    __slots__ = ("x", "y", "w", "h", "flip")

    def __init__(self, x, y, w, h, flip):
        self.x, self.y, self.w, self.h, self.flip = x, y, w, h, flip

    def as_tuple(self):
        return (self.x, self.y, self.w, self.h, self.flip)

    def __repr__(self):
        return f"CropBox{self.as_tuple()}"


def _js_round(x):
    """Math.round: floor(x + 0.5) without the double rounding of the addition."""
    f = math.floor(x)
    return f + 1 if x - f >= 0.5 else f


_LOG_R = (math.log(3 / 4), math.log(4 / 3))


def draw_crop(rng, side, scale=(0.2, 1.0), flip=True):
    """torchvision's RandomResizedCrop.get_params (10 tries, then the whole image), plus a coin for the flip."""
    area = side * side
    lo, hi = _LOG_R
    for _ in range(10):
        target = area * (scale[0] + rng.uniform() * (scale[1] - scale[0]))
        ratio = math.exp(lo + rng.uniform() * (hi - lo))
        w = _js_round(math.sqrt(target * ratio))
        h = _js_round(math.sqrt(target / ratio))
        if w > 0 and h > 0 and w <= side and h <= side:
            y = rng.int(side - h + 1)
            x = rng.int(side - w + 1)
            return CropBox(x, y, w, h, bool(flip and rng.uniform() < 0.5))
    return CropBox(0, 0, side, side, bool(flip and rng.uniform() < 0.5))


def _cubic(t):
    a = -0.5
    x = abs(t)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def _bicubic_taps(start, length, out, size):
    idx = np.empty((out, 4), np.int64)
    w = np.empty((out, 4), np.float64)  # float32 values, held as doubles
    scale = length / out
    for o in range(out):
        src = start + (o + 0.5) * scale - 0.5
        base = math.floor(src)
        ws = []
        total = 0.0
        for k in range(4):
            p = base - 1 + k
            wk = _cubic(src - p)
            idx[o, k] = min(size - 1, max(0, p))
            ws.append(float(np.float32(wk)))
            total += wk
        for k in range(4):
            w[o, k] = float(np.float32(ws[k] / total))
    return idx, w


_TAPS_CACHE = {}


def _taps_cached(start, length, out, size):
    key = (start, length, out, size)
    t = _TAPS_CACHE.get(key)
    if t is None:
        if len(_TAPS_CACHE) > 65536:
            _TAPS_CACHE.clear()
        t = _TAPS_CACHE[key] = _bicubic_taps(start, length, out, size)
    return t


def crop_resize(src, box, out, mean=None, std=None):
    """augment.ts's cropResizeNormalize of one [side, side, 3] uint8 image -> [out, out, 3] float32 (HWC).

    With mean/std: (v/255 - mean) / std as the workbench computes it; without: v/255 (the values in [0, 1] the
    PyTorch model takes, normalising itself). The resampling is the TypeScript's to the last bit.
    """
    side = src.shape[0]
    tx_i, tx_w = _taps_cached(box.x, box.w, out, side)
    ty_i, ty_w = _taps_cached(box.y, box.h, out, side)
    flat = src.reshape(side, side * 3).astype(np.float64)
    # vertical pass: a Float32Array row, each tap's double sum rounded to float32 as it is stored
    tmp = np.zeros((out, side * 3), np.float32)
    for k in range(4):
        tmp = (tmp.astype(np.float64) + ty_w[:, k:k + 1] * flat[ty_i[:, k]]).astype(np.float32)
    t3 = tmp.astype(np.float64).reshape(out, side, 3)
    # horizontal pass in doubles
    v = np.zeros((out, out, 3), np.float64)
    for k in range(4):
        v += tx_w[:, k][None, :, None] * t3[:, tx_i[:, k], :]
    v = np.minimum(255.0, np.maximum(0.0, v))
    if mean is None:
        res = (v / 255).astype(np.float32)
    else:
        res = ((v / 255 - np.asarray(mean, np.float64)) / np.asarray(std, np.float64)).astype(np.float32)
    if box.flip:
        res = res[:, ::-1, :]
    return res


def draw_orders(rng, batch, k):
    """engine/train/pretrain.ts's drawOrders: one permutation of the K clusters per sample, [batch, k] int64."""
    out = np.empty((batch, k), np.int64)
    for b in range(batch):
        out[b] = rng.permutation(k)
    return out


def order_length(model_cfg, objective):
    """Entries per sample of the order the model takes: K clusters (D-iGPT and its ablations), G*G patches (mae),
    none (kd)."""
    if objective in ("digpt", "gen-only", "dis-only"):
        return int(model_cfg["clusters_per_side"]) ** 2
    if objective == "mae":
        return (int(model_cfg["img_size"]) // int(model_cfg["patch_size"])) ** 2
    if objective == "kd":
        return 0
    raise ValueError(f"unknown pretraining objective {objective!r}")


class MicroBatch:
    """One global micro-batch as drawn: image indices [B], crop boxes [B], orders [B, K]; epoch after the draws."""

    __slots__ = ("indices", "boxes", "orders", "epoch")

    def __init__(self, indices, boxes, orders, epoch):
        self.indices, self.boxes, self.orders, self.epoch = indices, boxes, orders, epoch

    def views(self, images, lo, hi, out, mean=None, std=None):
        """The crops of samples lo..hi-1 at `out` px, [n, 3, out, out] float32 (NCHW)."""
        n = hi - lo
        res = np.empty((n, 3, out, out), np.float32)
        for j in range(n):
            i = lo + j
            res[j] = crop_resize(images.get(self.indices[i]), self.boxes[i], out, mean, std).transpose(2, 0, 1)
        return res


def draw_micro_batch(stream, images_side, batch, k):
    """Draws one global micro-batch as PretrainRun.microBatch does: per image its index, then its crop; then orders."""
    indices = []
    boxes = []
    for _ in range(batch):
        indices.append(stream.next())  # may start an epoch: its order is drawn from the same Rng
        boxes.append(draw_crop(stream.rng, images_side))
    orders = draw_orders(stream.rng, batch, k)
    return MicroBatch(indices, boxes, orders, stream.epoch)


def shard_bounds(batch, world, rank):
    """Rank `rank`'s contiguous slice [lo, hi) of a global micro-batch of `batch` over `world` ranks: the first
    batch % world ranks take one sample more (numpy.array_split's rule) when the batch does not divide."""
    q, r = divmod(batch, world)
    lo = rank * q + min(rank, r)
    return lo, lo + q + (1 if rank < r else 0)
