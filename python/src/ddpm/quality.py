"""quality.py -- ddpm.fid: sample quality (FID, Inception Score, precision/recall) of an array of images
against reference images or statistics, in a feature network's space (ddpm_features_open,
ddpm_stats_compute, ddpm_quality_compare), as `ddpm eval fid` measures it."""
import dataclasses
import os

from . import _lib
from ._convert import cstr, fptr, images_in, string
from ._lib import ffi, lib
from .dataset import Dataset

FEATURES = ("auto", "fmnist", "inception")


@dataclasses.dataclass(frozen=True)
class Quality:
    """What ddpm.fid measured. fid is labelled by label ("FID", or "FID (F-MNIST features)": not
    comparable with Inception FIDs); inception_score (and its std over 10 splits) only with Inception
    features and n >= 10, precision and recall (k = 3) only when both sides keep features: None
    otherwise. n samples, n_ref reference images (0: unknown), n_pr images per side in precision/recall.
    broken: the share of broken samples (dark, white or noisy beyond 99.9% of the reference's images,
    docs/quality.md) and broken_by {"dark", "white", "noisy"}, when the reference keeps the images'
    looks (images, or ddpm's statistics): None otherwise."""
    fid: float
    label: str
    features: str
    inception_score: object
    inception_score_std: object
    precision: object
    recall: object
    n: int
    n_ref: int
    n_pr: int
    broken: object = None
    broken_by: object = None


def _stats(net, x, flags, progress):
    out = ffi.new("ddpm_stats **")
    n, c, h, w = x.shape

    def run(cb, ctx):
        return lib.ddpm_stats_compute(net, n, c, h, w, fptr(x), ffi.NULL, flags, cb, ctx, out)

    _lib.long_call(run, progress, handle=net)
    return out[0]


def fid(samples, ref, features="auto", inception=None, batch=64, progress=None):
    """The FID of samples against ref, with IS and precision/recall where they apply (a Quality).

    samples: images (float32 [n, C, H, W] in [-1, 1], not copied, or uint8 [n, H, W, C], converted),
    n >= 2. ref: images as samples, a ddpm.Dataset (all its images), or the path of an .npz of
    statistics (pytorch-fid's mu/sigma, ddpm's with features). features: "auto" (F-MNIST features for
    28x28 gray images or 256-d statistics, else Inception), "fmnist" or "inception"; inception: the
    Inception weights file (None: ddpm's default path). progress(done, total) counts images of each
    side in turn; True cancels. Ctrl-C cancels."""
    if features not in FEATURES:
        raise ValueError(f"features: one of {', '.join(FEATURES)}, got {features!r}")
    x = images_in(samples, "samples")
    keep, handles = [], []
    net = ref_stats = None
    try:
        rx = None
        if isinstance(ref, (str, bytes, os.PathLike)):
            p = ffi.new("ddpm_stats **")
            _lib.call(lib.ddpm_stats_load, cstr(ref, keep), p)
            ref_stats = p[0]
        elif isinstance(ref, Dataset):
            rx, _ = ref.images()
        else:
            rx = images_in(ref, "ref")
        if rx is not None and rx.shape[1:] != x.shape[1:]:
            raise ValueError(f"ref: images of shape {rx.shape[1:]} (CHW), the samples' are {x.shape[1:]}: "
                             "compare like with like")
        n, c, h, w = x.shape
        if features == "auto":
            kind = lib.ddpm_features_auto(c, h, w, ref_stats if ref_stats is not None else ffi.NULL)
        else:
            k = ffi.new("ddpm_features_kind *")
            _lib.call(lib.ddpm_features_kind_parse, features.encode(), k)
            kind = k[0]
        nmax = max(n, rx.shape[0] if rx is not None else 0)
        p = ffi.new("ddpm_features **")
        _lib.call(lib.ddpm_features_open, kind, cstr(inception, keep), max(1, min(int(batch), nmax)), p)
        net = p[0]
        if n < 2:
            raise ValueError(f"samples: FID needs at least 2 images, got {n}")
        _lib.call(lib.ddpm_features_check, net, n, c, h, w, fptr(x), handle=net)
        s = _stats(net, x, lib.DDPM_STATS_FEATURES | lib.DDPM_STATS_LOGITS, progress)
        handles.append(s)
        if rx is not None:
            ref_stats = _stats(net, rx, lib.DDPM_STATS_FEATURES, progress)
        q = ffi.new("ddpm_quality *")
        _lib.call(lib.ddpm_quality_compare, net, s, ref_stats, q, handle=net)
        with _lib.LOCK:
            label, name = string(lib.ddpm_features_label(net)), string(lib.ddpm_features_kind_name(kind))
        return Quality(fid=q.fid, label=label, features=name,
                       inception_score=q.is_mean if q.has_is else None,
                       inception_score_std=q.is_std if q.has_is else None,
                       precision=q.precision if q.has_pr else None, recall=q.recall if q.has_pr else None,
                       n=q.n, n_ref=q.n_ref, n_pr=q.n_pr,
                       broken=q.broken / q.n if q.has_broken else None,
                       broken_by=dict(zip(("dark", "white", "noisy"), (q.broken_by[k] / q.n for k in range(3))))
                       if q.has_broken else None)
    finally:
        with _lib.LOCK:
            for s in handles:
                lib.ddpm_stats_free(s)
            if ref_stats is not None:
                lib.ddpm_stats_free(ref_stats)
            if net is not None:
                lib.ddpm_features_free(net)
