"""safetensors files with numpy alone: a checked reader (lazy, one tensor at a time) and an atomic writer.

The format: 8 bytes little-endian header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__":
{str: str}}, then the tensor bytes. Every header is checked the way the workbench's reader checks it
(engine/io/safetensors.ts): a bad file is refused with a SafetensorsError whose message starts with the file name.
Read: F32, F16 (as float16), BF16 (widened to float32, numpy has no bfloat16), F64, I64, I32, I16, I8, U8, BOOL.
Write: float32, float16, float64, int64, int32, int16, int8, uint8, bool arrays (torch tensors via `save_torch`).
"""
import json
import os
import struct
import sys
import tempfile

import numpy as np

__all__ = [
    "SafetensorsError",
    "SafetensorsFile",
    "read_safetensors",
    "write_safetensors",
    "load_torch",
    "save_torch",
]

# Same bound as the reference Rust implementation and the workbench: a corrupt length cannot make us allocate GBs.
MAX_HEADER_BYTES = 100_000_000

_DTYPES = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # raw bits; widened to float32 on read
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_WRITE_DTYPES = {
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("float64"): "F64",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file, or a tensor that cannot be written; the message names the file."""

    def __init__(self, path, message, key=None):
        self.path = str(path)
        self.key = key
        text = f'{path}: "{key}": {message}' if key is not None else f"{path}: {message}"
        super().__init__(text)


def _no_duplicates(pairs):
    seen = {}
    for k, v in pairs:
        if k in seen:
            raise _Duplicate(k)
        seen[k] = v
    return seen


class _Duplicate(Exception):
    pass


def _describe(v):
    s = json.dumps(v)
    return s if len(s) <= 80 else s[:77] + "..."


class SafetensorsFile:
    """A checked safetensors file, read lazily: `keys()`, `shape(k)`, `dtype(k)`, `get(k)`, `metadata`.

    Usable as a context manager; `get` returns a fresh numpy array (BF16 widened to float32).
    """

    def __init__(self, path):
        self.path = str(path)
        if sys.byteorder != "little":
            raise SafetensorsError(self.path, "big-endian hosts are not supported (safetensors data is little-endian)")
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SafetensorsError(self.path, "no such file") from None
        import stat as _stat

        if not _stat.S_ISREG(st.st_mode):
            raise SafetensorsError(self.path, "not a regular file")
        self._f = open(self.path, "rb")
        try:
            self._parse(os.fstat(self._f.fileno()).st_size)
        except BaseException:
            self._f.close()
            raise

    def _parse(self, size):
        p = self.path
        if size < 8:
            raise SafetensorsError(p, f"file is {size} bytes, shorter than the 8-byte header length")
        (n,) = struct.unpack("<Q", self._f.read(8))
        if n > MAX_HEADER_BYTES:
            raise SafetensorsError(p, f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte (100 MB) limit "
                                      "(not a safetensors file?)")
        if 8 + n > size:
            raise SafetensorsError(p, f"truncated: header length {n} needs {8 + n} bytes but the file is {size} bytes"
                                      " (not a safetensors file?)")
        raw = self._f.read(n)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SafetensorsError(p, "header is not valid UTF-8 (not a safetensors file?)") from None
        try:
            header = json.loads(text, object_pairs_hook=_no_duplicates)
        except _Duplicate as d:
            raise SafetensorsError(p, "key appears more than once in the header", d.args[0]) from None
        except ValueError as e:
            raise SafetensorsError(p, f"header is not valid JSON ({e})") from None
        if not isinstance(header, dict):
            raise SafetensorsError(p, f"header must be a JSON object, found {_describe(header)}")
        start = 8 + n
        self.metadata = {}
        self._entries = {}
        for name, info in header.items():
            if name == "__metadata__":
                if not isinstance(info, dict):
                    raise SafetensorsError(p, f"__metadata__ must be an object of strings, found {_describe(info)}")
                for k, v in info.items():
                    if not isinstance(v, str):
                        raise SafetensorsError(p, f"metadata value must be a string, found {_describe(v)}",
                                               f"__metadata__.{k}")
                self.metadata = dict(info)
                continue
            self._entries[name] = self._entry(name, info, start, size)
        # the tensors must tile the data exactly: no overlap, no hole, no trailing bytes
        expected = start
        prev = None
        for name, (_, _, b, e) in sorted(self._entries.items(), key=lambda kv: (kv[1][2], kv[1][3])):
            if b < expected:
                raise SafetensorsError(p, f"data_offsets overlap those of \"{prev}\"", name)
            if b > expected:
                raise SafetensorsError(p, f"data_offsets leave a hole of {b - expected} bytes before it", name)
            expected, prev = e, name
        if expected < size:
            raise SafetensorsError(p, f"{size - expected} trailing bytes after the last tensor: the file is {size} "
                                      f"bytes, its header and tensors account for {expected}")

    def _entry(self, name, info, start, size):
        p = self.path
        if not isinstance(info, dict):
            raise SafetensorsError(p, f"entry must be an object, found {_describe(info)}", name)
        dtype = info.get("dtype")
        if dtype not in _DTYPES:
            raise SafetensorsError(p, f"unsupported dtype {_describe(dtype)} (supported: {', '.join(_DTYPES)})", name)
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                  for d in shape):
            raise SafetensorsError(p, f"shape must be an array of non-negative integers, found {_describe(shape)}",
                                   name)
        off = info.get("data_offsets")
        if (not isinstance(off, list) or len(off) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in off)):
            raise SafetensorsError(p, f"data_offsets must be two non-negative integers, found {_describe(off)}", name)
        b, e = off
        if e < b:
            raise SafetensorsError(p, f"data_offsets [{b}, {e}] end before they begin", name)
        count = 1
        for d in shape:
            count *= d
        want = count * _DTYPES[dtype].itemsize
        if e - b != want:
            raise SafetensorsError(p, f"data_offsets [{b}, {e}] hold {e - b} bytes, shape {shape} of {dtype} "
                                      f"needs {want}", name)
        if start + e > size:
            raise SafetensorsError(p, f"truncated: tensor ends at byte {start + e} but the file is {size} bytes",
                                   name)
        return dtype, tuple(shape), start + b, start + e

    # --- access ---

    def keys(self):
        """Tensor names in header order."""
        return list(self._entries)

    def __contains__(self, name):
        return name in self._entries

    def _get_entry(self, name):
        try:
            return self._entries[name]
        except KeyError:
            raise SafetensorsError(self.path, "no such tensor in the file", name) from None

    def shape(self, name):
        return self._get_entry(name)[1]

    def dtype(self, name):
        return self._get_entry(name)[0]

    def get(self, name):
        """The tensor as a numpy array of its shape (BF16 as float32)."""
        dtype, shape, b, e = self._get_entry(name)
        if self._f.closed:
            raise SafetensorsError(self.path, "file is closed", name)
        self._f.seek(b)
        buf = self._f.read(e - b)
        if len(buf) != e - b:
            raise SafetensorsError(self.path, f"truncated: expected {e - b} bytes at offset {b}, read {len(buf)}",
                                   name)
        a = np.frombuffer(buf, dtype=_DTYPES[dtype]).copy()
        if dtype == "BF16":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        return a.reshape(shape)

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def read_safetensors(path):
    """Every tensor of a file: (dict name -> numpy array, metadata dict of strings)."""
    with SafetensorsFile(path) as f:
        return {k: f.get(k) for k in f.keys()}, dict(f.metadata)


def _plan(path, tensors):
    planned = []
    for name, a in tensors.items():
        if not isinstance(name, str) or name == "__metadata__":
            raise SafetensorsError(path, "name is reserved for metadata or not a string", name)
        a = np.asarray(a)
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        code = _WRITE_DTYPES.get(a.dtype)
        if code is None:
            raise SafetensorsError(path, f"cannot write dtype {a.dtype} (supported: "
                                         f"{', '.join(str(d) for d in _WRITE_DTYPES)})", name)
        a = np.asarray(a, order="C")  # keeps 0-d arrays 0-d (ascontiguousarray would not)
        planned.append((name, code, a))
    # sorted by UTF-8 bytes, as Python's reference writer and the workbench order them
    planned.sort(key=lambda t: t[0].encode("utf-8"))
    return planned


def write_safetensors(path, tensors, metadata=None):
    """Writes numpy arrays (dict name -> array) with string metadata, atomically (temp file + fsync + os.replace).

    Tensors are written in sorted name order, the header space-padded to a multiple of 8, metadata last and left out
    when empty: the layout the workbench writes. Everything is checked before the first byte is written.
    """
    path = str(path)
    planned = _plan(path, tensors)
    parts = []
    offset = 0
    for name, code, a in planned:
        info = {"dtype": code, "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        parts.append(json.dumps(name) + ":" + json.dumps(info, separators=(",", ":")))
        offset += a.nbytes
    meta = dict(metadata or {})
    for k, v in meta.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise SafetensorsError(path, f"metadata keys and values must be strings, found {_describe(v)}",
                                   f"__metadata__.{k}")
    if meta:
        parts.append('"__metadata__":' + json.dumps(meta, separators=(",", ":")))
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * (-len(header) % 8)
    if len(header) > MAX_HEADER_BYTES:
        raise SafetensorsError(path, f"header would be {len(header)} bytes, over the {MAX_HEADER_BYTES}-byte limit")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".tmp-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(struct.pack("<Q", len(header)))
            f.write(header)
            for _, _, a in planned:
                f.write(a.reshape(-1).view(np.uint8).data if a.size else b"")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass  # some filesystems refuse fsync on a folder; the rename happened


# --- torch helpers (torch imported lazily so the reader works without it) ---


def load_torch(path):
    """Every tensor of a file as torch tensors on the CPU: (dict, metadata)."""
    import torch

    arrays, meta = read_safetensors(path)
    return {k: torch.from_numpy(v) for k, v in arrays.items()}, meta


def save_torch(path, tensors, metadata=None):
    """Writes torch tensors (any device; bfloat16 written as float32) with `write_safetensors`."""
    import torch

    out = {}
    for k, t in tensors.items():
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            t = t.float()
        out[k] = t.contiguous().numpy()
    write_safetensors(path, out, metadata)
