"""_convert.py -- NumPy arrays to and from the library's buffers, and what they cost.

The library's images are float32 NCHW in [-1, 1] (pixel p is p / 127.5 - 1). Inputs:
  - float32, C-contiguous, 4-D [N, C, H, W]: passed to the library as they are (no copy);
  - uint8 [N, H, W, C] (or [N, H, W] for gray images), any strides: converted to a new float32 NCHW
    array (a copy: the layout needs one), p / 127.5 - 1 as the library computes it;
  - anything else (float64, int, a list, a non-contiguous float32 array, the wrong rank) is refused
    with TypeError or ValueError naming the argument: no hidden copies.
Outputs are new arrays the library writes into (float32 NCHW, no further copy), or with uint8=True
a second array, uint8 NHWC, pixel round((x + 1) / 2 * 255) clamped to 0..255 (the library's PNG).
"""
import numpy as np

from ._lib import ffi


def _name(what):
    return what or "images"


def images_in(x, what=None, channels=None, size=None):
    """x as a float32 C-contiguous NCHW array the library may read (x itself when it already is one)."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{_name(what)}: expected a numpy array (float32 NCHW or uint8 NHWC), got {type(x).__name__}")
    if x.dtype == np.uint8:
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4:
            raise ValueError(f"{_name(what)}: a uint8 array must be [N, H, W, C] or [N, H, W], got shape {x.shape}")
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32)
        x /= np.float32(127.5)
        x -= np.float32(1.0)
    elif x.dtype == np.float32:
        if x.ndim != 4:
            raise ValueError(f"{_name(what)}: a float32 array must be [N, C, H, W], got shape {x.shape}")
        if not x.flags.c_contiguous:
            raise ValueError(f"{_name(what)}: the float32 array is not C-contiguous (ddpm does not copy float32 "
                             "input): pass np.ascontiguousarray(x)")
    else:
        raise TypeError(f"{_name(what)}: expected float32 (NCHW, in [-1, 1]) or uint8 (NHWC), got {x.dtype}")
    n, c, h, w = x.shape
    if n < 1:
        raise ValueError(f"{_name(what)}: no images (shape {x.shape})")
    if channels is not None and c != channels:
        raise ValueError(f"{_name(what)}: {c} channels, the model takes {channels} (shape {x.shape}, NCHW)")
    if size is not None and (h, w) != (size, size):
        raise ValueError(f"{_name(what)}: {h}x{w} images, the model takes {size}x{size} (shape {x.shape}, NCHW)")
    return x


def images_out(x, uint8):
    """The library's float32 NCHW output x, or (uint8=True) a new uint8 NHWC array of its pixels."""
    if not uint8:
        return x
    p = np.floor((np.clip(x, -1.0, 1.0) + 1.0) * np.float32(127.5) + np.float32(0.5))
    return np.ascontiguousarray(p.astype(np.uint8).transpose(0, 2, 3, 1))


def int32s(v, n, what):
    """v (an int, or a sequence/array of n ints) as a C-contiguous int32 array of n values."""
    if isinstance(v, (bool, np.bool_)):
        raise TypeError(f"{what}: expected an int or {n} ints, got a bool")
    if isinstance(v, (int, np.integer)):
        return np.full(n, int(v), dtype=np.int32)
    a = np.asarray(v)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{what}: expected integers, got {a.dtype}")
    if a.shape != (n,):
        raise ValueError(f"{what}: expected {n} values, got shape {a.shape}")
    if a.size and (a.min() < -2**31 or a.max() >= 2**31):
        raise ValueError(f"{what}: a value is out of the int32 range")
    return np.ascontiguousarray(a, dtype=np.int32)


def fptr(a):
    """A float * to a's data (a float32 C-contiguous array that outlives the call)."""
    return ffi.cast("float *", a.ctypes.data)


def dptr(a):
    return ffi.cast("double *", a.ctypes.data)


def iptr(a):
    """An int32_t * to a's data, or NULL for None."""
    return ffi.NULL if a is None else ffi.cast("int32_t *", a.ctypes.data)


def cstr(s, keep):
    """s (str, bytes or os.PathLike; None: NULL) as a char * that lives as long as the list keep."""
    if s is None:
        return ffi.NULL
    import os
    b = os.fsencode(s) if not isinstance(s, bytes) else s
    buf = ffi.new("char[]", b)
    keep.append(buf)
    return buf


def string(p):
    """A const char * of the library as str (None for NULL)."""
    return None if p == ffi.NULL else ffi.string(p).decode(errors="replace")
