#!/usr/bin/python3
"""st.py -- minimal safetensors reader/writer (pure Python + numpy), written for this project.

Format (see docs/diffusers.md, "safetensors"):
    u64 little-endian N = header length
    N bytes of UTF-8 JSON: {"__metadata__": {...}, name: {"dtype", "shape", "data_offsets": [b, e]}, ...}
        padded at the end with spaces so that 8 + N is a multiple of 8
    data buffer: tensors back to back, offsets relative to the buffer start

Reader: F64, F32, F16, BF16, I64, I32, U8 (BF16 is widened to float32, everything else keeps its numpy dtype).
Writer: F32, F64, I64, I32, U8 (float16 too); tensors ordered by descending dtype size, then name,
with contiguous data_offsets, compact JSON, "__metadata__": {"format": "pt"}.

API:
    read(path)  -> dict name -> numpy array      (insertion order = order in the data buffer)
    read_header(path) -> (header dict, data start offset)
    write(path, tensors, metadata=None)  tensors: dict name -> numpy array or torch tensor
"""
import json
import struct

import numpy as np

# dtype string -> (numpy dtype, element size)
_READ = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # widened to float32 below
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "U8": (np.dtype("u1"), 1),
}

_WRITE = {
    np.dtype("float64"): ("F64", 8),
    np.dtype("float32"): ("F32", 4),
    np.dtype("float16"): ("F16", 2),
    np.dtype("int64"): ("I64", 8),
    np.dtype("int32"): ("I32", 4),
    np.dtype("uint8"): ("U8", 1),
}


def read_header(path):
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise ValueError(f"{path}: too short for a safetensors header")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise ValueError(f"{path}: header length {n} too large")
        hdr = f.read(n)
        if len(hdr) != n:
            raise ValueError(f"{path}: truncated header")
    text = hdr.decode("utf-8")
    if not text.startswith("{"):
        raise ValueError(f"{path}: header does not start with '{{'")

    def no_dups(pairs):
        d = {}
        for k, v in pairs:
            if k in d:
                raise ValueError(f"{path}: duplicate key {k!r}")
            d[k] = v
        return d

    header = json.loads(text, object_pairs_hook=no_dups)
    return header, 8 + n


def read(path):
    header, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        buf = f.read()
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    entries.sort(key=lambda kv: tuple(kv[1]["data_offsets"]))
    out = {}
    pos = 0
    for name, info in entries:
        dt = info["dtype"]
        if dt not in _READ:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        npdt, size = _READ[dt]
        shape = tuple(int(s) for s in info["shape"])
        b, e = (int(x) for x in info["data_offsets"])
        numel = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if b != pos:
            raise ValueError(f"{path}: tensor {name}: gap/overlap at {b} (expected {pos})")
        if e - b != numel * size:
            raise ValueError(f"{path}: tensor {name}: {e - b} bytes for {numel} x {dt}")
        arr = np.frombuffer(buf, dtype=npdt, count=numel, offset=b).reshape(shape).copy()
        if dt == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr
        pos = e
    if pos != len(buf):
        raise ValueError(f"{path}: data buffer has {len(buf)} bytes, tensors cover {pos}")
    return out


def _to_numpy(t):
    if hasattr(t, "detach"):  # torch tensor
        t = t.detach().cpu().contiguous().numpy()
    a = np.asarray(t)
    return a if a.flags.c_contiguous else a.copy(order="C")  # (ascontiguousarray would make 0-d arrays 1-d)


def write(path, tensors, metadata=None):
    arrs = {}
    for name, t in tensors.items():
        a = _to_numpy(t)
        if a.dtype not in _WRITE:
            raise ValueError(f"tensor {name}: cannot write dtype {a.dtype}")
        arrs[name] = a
    order = sorted(arrs, key=lambda k: (-_WRITE[arrs[k].dtype][1], k))
    header = {"__metadata__": dict(metadata) if metadata is not None else {"format": "pt"}}
    pos = 0
    for name in order:
        a = arrs[name]
        nbytes = a.size * _WRITE[a.dtype][1]
        header[name] = {"dtype": _WRITE[a.dtype][0], "shape": list(a.shape), "data_offsets": [pos, pos + nbytes]}
        pos += nbytes
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    pad = (-(8 + len(text))) % 8
    text += b" " * pad
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            f.write(arrs[name].astype(arrs[name].dtype.newbyteorder("<"), copy=False).tobytes())


if __name__ == "__main__":
    import sys

    for p in sys.argv[1:]:
        h, start = read_header(p)
        print(f"{p}: header {start - 8} bytes, metadata {h.get('__metadata__')}")
        for k, v in read(p).items():
            print(f"  {k:60s} {str(v.dtype):8s} {list(v.shape)}")
