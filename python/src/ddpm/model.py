"""model.py -- ddpm.Model: a loaded model folder (ddpm_model) with its noise prediction, sampling and
likelihood as NumPy calls. Nothing here computes: every method converts its arguments, makes one
library call and converts the result (include/ddpm.h documents what each call does)."""
import dataclasses
import json
import os

import numpy as np

from . import _lib
from ._convert import cstr, dptr, fptr, images_in, images_out, int32s, iptr, string
from ._lib import ffi, lib

SAMPLERS = {"ddpm": lib.DDPM_SAMPLER_DDPM, "ddim": lib.DDPM_SAMPLER_DDIM, "dpm++2m": lib.DDPM_SAMPLER_DPMPP_2M}
X0 = {"auto": lib.DDPM_X0_AUTO, "config": lib.DDPM_X0_CONFIG, "none": lib.DDPM_X0_NONE, "clip": lib.DDPM_X0_CLIP,
      "threshold": lib.DDPM_X0_THRESHOLD}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """ddpm_model_info: the network, its classes and its noise schedule."""
    sample_size: int
    in_channels: int
    out_channels: int
    num_class_embeds: int
    num_classes: int
    null_class: int
    has_class_names: bool
    num_train_timesteps: int
    has_scheduler: bool
    num_parameters: int
    flops_per_image: float
    dir: str
    block_out_channels: tuple
    down_attention: tuple
    layers_per_block: int
    norm_groups: int
    norm_eps: float
    dropout: float
    beta_schedule: str
    beta_start: float
    beta_end: float
    variance_type: str
    timestep_spacing: str


@dataclasses.dataclass(frozen=True)
class SampleReport:
    """ddpm_sample_report of the last Model.sample: the final samples' range before the clamp."""
    images: int
    pixels: int
    out_pixels: int
    out_images: int
    max_abs: float


@dataclasses.dataclass(frozen=True)
class NLL:
    """Model.nll(terms=True): bits/dim [n], the bound's terms in nats [n, T+1] (t = 0: L_0, T: the
    prior L_T), and the MSE of the clipped predicted x0 at each t [n, T]."""
    bpd: np.ndarray
    terms: np.ndarray
    mse: np.ndarray


class Model(_lib.Handle):
    """A model folder (diffusers layout) or a training run's model, loaded by Model.load(path).
    Close it with .close() or a with block (it is also freed when garbage-collected); a closed model
    raises ValueError. Calls on one model, like every ddpm call, run one at a time."""
    _free, _what = "ddpm_model_free", "model"

    def __init__(self, handle):
        self._h = handle
        self._info = None
        self.last_report = None

    @classmethod
    def load(cls, path):
        """ddpm_model_load: a model folder (config.json, diffusion_pytorch_model.safetensors,
        scheduler_config.json) or a run folder (its model/). InputError when it cannot be read."""
        keep, out = [], ffi.new("ddpm_model **")
        _lib.call(lib.ddpm_model_load, cstr(os.fspath(path), keep), out)
        return cls(out[0])

    def __repr__(self):
        if self._h is None:
            return "<ddpm.Model (closed)>"
        i = self.info
        return (f"<ddpm.Model {i.dir!r}: {i.in_channels}x{i.sample_size}x{i.sample_size}, "
                f"{i.num_parameters} parameters, T={i.num_train_timesteps}>")

    # -- what it is
    @property
    def info(self):
        """ModelInfo (ddpm_model_get_info; read once, a model does not change)."""
        h = self._handle()
        if self._info is not None:
            return self._info
        i = ffi.new("ddpm_model_info *")
        _lib.call(lib.ddpm_model_get_info, h, i, handle=h)
        self._info = ModelInfo(
            sample_size=i.sample_size, in_channels=i.in_channels, out_channels=i.out_channels,
            num_class_embeds=i.num_class_embeds, num_classes=i.num_classes, null_class=i.null_class,
            has_class_names=bool(i.has_class_names), num_train_timesteps=i.num_train_timesteps,
            has_scheduler=bool(i.has_scheduler), num_parameters=int(i.num_parameters),
            flops_per_image=i.flops_per_image, dir=string(i.dir),
            block_out_channels=tuple(i.block_out_channels[k] for k in range(i.levels)),
            down_attention=tuple(bool(i.down_attention[k]) for k in range(i.levels)),
            layers_per_block=i.layers_per_block, norm_groups=i.norm_groups, norm_eps=i.norm_eps,
            dropout=i.dropout, beta_schedule=string(i.beta_schedule), beta_start=i.beta_start,
            beta_end=i.beta_end, variance_type=string(i.variance_type), timestep_spacing=string(i.timestep_spacing))
        return self._info

    @property
    def config(self):
        """config.json as ddpm writes it (a dict)."""
        with _lib.LOCK:
            return json.loads(string(lib.ddpm_model_config_json(self._handle())))

    @property
    def scheduler_config(self):
        """scheduler_config.json as ddpm writes it (a dict)."""
        with _lib.LOCK:
            return json.loads(string(lib.ddpm_model_scheduler_json(self._handle())))

    @property
    def class_names(self):
        """The names of the num_classes classes to draw (ddpm_model_class_name)."""
        h = self._handle()
        with _lib.LOCK:
            i = ffi.new("ddpm_model_info *")
            _lib.check(lib.ddpm_model_get_info(h, i), h)
            return [string(lib.ddpm_model_class_name(h, k)) for k in range(i.num_classes)]

    def run_state(self):
        """(step, options) of the training run the model was loaded from (ddpm_model_run_state):
        step an int, options a dict; (None, None) for a plain model folder."""
        h = self._handle()
        step, opts = ffi.new("const char **"), ffi.new("const char **")
        _lib.call(lib.ddpm_model_run_state, h, step, opts, handle=h)
        s, o = string(step[0]), string(opts[0])
        return (int(s) if s is not None else None), (json.loads(o) if o is not None else None)

    def _classes(self, classes, n, what="classes"):
        """classes (None, a class index or name, or n of them) as int32 [n], or None (NULL)."""
        if classes is None:
            return None
        h = self._handle()
        if isinstance(classes, (str, bytes)) or isinstance(classes, (int, np.integer)):
            classes = [classes] * n
        elif isinstance(classes, np.ndarray) and classes.dtype.kind in "iu":
            return int32s(classes, n, what)
        ks = []
        for c in classes:
            if isinstance(c, (str, bytes)):
                keep = []
                with _lib.LOCK:
                    k = lib.ddpm_model_find_class(h, cstr(c, keep))
                if k < 0:
                    raise ValueError(f"{what}: the model has no class {c!r} (classes: {self.class_names})")
                ks.append(k)
            else:
                ks.append(c)
        return int32s(np.array(ks) if ks else np.zeros(0, dtype=np.int32), n, what)

    # -- computing
    def eps(self, x, t, classes=None):
        """The network's noise prediction eps(x_t, t) (ddpm_model_eps): x float32 [n, C, H, W] (not
        copied) or uint8 [n, H, W, C] (converted), t an int or n ints in 0..T-1, classes (conditional
        models; None: the null class) an int, a name, or n of them. Returns a new float32
        [n, out_channels, H, W] array."""
        h = self._handle()
        i = self.info
        x = images_in(x, "x", i.in_channels, i.sample_size)
        n = x.shape[0]
        ts = int32s(t, n, "t")
        labels = self._classes(classes, n)
        out = np.empty((n, i.out_channels, i.sample_size, i.sample_size), dtype=np.float32)
        _lib.call(lib.ddpm_model_eps, h, n, fptr(x), iptr(ts), iptr(labels), fptr(out), handle=h)
        return out

    def diffuse(self, x0, t, noise=None, seed=0, first_index=0):
        """The forward process x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (ddpm_model_diffuse):
        x0 images as eps takes them, t an int or n ints, noise float32 like x0 or None (drawn from
        (seed, first_index + i)). Returns a new float32 NCHW array."""
        h = self._handle()
        i = self.info
        x0 = images_in(x0, "x0", i.in_channels, i.sample_size)
        n = x0.shape[0]
        ts = int32s(t, n, "t")
        nz = ffi.NULL
        if noise is not None:
            noise = images_in(noise, "noise", i.in_channels, i.sample_size)
            if noise.shape != x0.shape:
                raise ValueError(f"noise: shape {noise.shape}, x0 has {x0.shape}")
            nz = fptr(noise)
        out = np.empty_like(x0)
        _lib.call(lib.ddpm_model_diffuse, h, n, fptr(x0), iptr(ts), nz, int(seed), int(first_index), fptr(out),
                  handle=h)
        return out

    def sample(self, n, sampler="ddpm", steps=None, seed=0, classes=None, guidance=None, progress=None, *,
               eta=0.0, spacing=None, x0="auto", threshold_ratio=0.0, threshold_max=0.0, raw=False, batch=None,
               noise=None, start_t=0, first_index=0, uint8=False, precision="fp32", guidance_rescale=0.0,
               guidance_interval=None):
        """Draws n images (ddpm_sample), as `ddpm sample` does with the same options.

        sampler "ddpm" | "ddim" | "dpm++2m"; steps network calls (None: the library's default, 50
        for ddpm and 20 for ddim and dpm++2m, at most T, T - 1 for dpm++2m); seed; classes (conditional models: an int, a name, or
        n of them; None: unconditional); guidance (classifier-free guidance W; None: the library's
        default, 3 with a null class); progress(done, total) after each network call, returning True
        to cancel (CancelledError). Keywords: eta (DDIM), spacing ("leading" | "trailing" |
        "linspace"; None: the scheduler_config's), x0 ("auto" | "config" | "none" | "clip" |
        "threshold"), threshold_ratio/threshold_max, raw (no final clamp), batch (images per network
        call; None: 64), noise (x_T, float32 [n, C, H, W]) with start_t, first_index, precision ("fp32" |
        "bf16", on a CPU with AVX512_BF16 or AMX-BF16 | "bf16-emulated": bf16's numbers on any CPU),
        guidance_rescale (diffusers' guidance_rescale, 0: off), guidance_interval ((lo, hi): guidance only at
        the steps of noise level sqrt((1 - alphabar_t) / alphabar_t) in (lo, hi]; "all": every step, as
        diffusers' pipelines; None: the library's default, (0, 2]).
        Returns float32 [n, C, H, W] in [-1, 1] (written by the library, no copy), or with uint8=True
        a uint8 [n, H, W, C] array (a converted copy). Ctrl-C cancels (KeyboardInterrupt)."""
        h = self._handle()
        i = self.info
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
            raise TypeError(f"n: expected an int, got {type(n).__name__}")
        if n < 1:
            raise ValueError(f"n: at least 1 image, got {n}")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: one of {', '.join(SAMPLERS)}, got {sampler!r}")
        if x0 not in X0:
            raise ValueError(f"x0: one of {', '.join(X0)}, got {x0!r}")
        keep = []
        o = ffi.new("ddpm_sample_options *")
        lib.ddpm_sample_options_init(o)
        o.sampler = SAMPLERS[sampler]
        o.steps = 0 if steps is None else steps
        o.eta = eta
        o.seed = seed
        o.spacing = cstr(spacing, keep)
        o.x0 = X0[x0]
        o.threshold_ratio, o.threshold_max = threshold_ratio, threshold_max
        o.raw = 1 if raw else 0
        if batch is not None:
            o.batch = batch
        labels = self._classes(classes, n)
        o.classes = ffi.cast("const int32_t *", iptr(labels))
        if guidance is not None:
            o.guidance = guidance
        o.guidance_rescale = guidance_rescale
        if isinstance(guidance_interval, str) and guidance_interval == "all":
            o.guidance_interval = [0.0, float("inf")]
        elif guidance_interval is not None:
            o.guidance_interval = [float(v) for v in guidance_interval]
        if noise is not None:
            noise = images_in(noise, "noise", i.in_channels, i.sample_size)
            if noise.shape[0] != n:
                raise ValueError(f"noise: {noise.shape[0]} images, n is {n}")
            o.noise = fptr(noise)
        o.start_t = start_t
        o.first_index = first_index
        o.precision = cstr(precision, keep)
        x = np.empty((n, i.in_channels, i.sample_size, i.sample_size), dtype=np.float32)
        report = ffi.new("ddpm_sample_report *")

        def run(cb, ctx):
            o.progress, o.progress_ctx = cb, ctx
            return lib.ddpm_sample(h, o, n, fptr(x), report)

        _lib.long_call(run, progress, handle=h)
        self.last_report = SampleReport(report.images, report.pixels, report.out_pixels, report.out_images,
                                        report.max_abs)
        return images_out(x, uint8)

    def nll(self, images, labels=None, seed=0, batch=None, progress=None, terms=False):
        """The variational bound in bits/dim of each image (ddpm_nll): images float32 [n, C, H, W]
        (not copied) or uint8 [n, H, W, C] (converted), labels (conditional models) as classes in
        sample. Returns float64 bpd [n], or with terms=True an NLL with the terms and MSEs too.
        progress(done, total) counts network evaluations; True cancels. Ctrl-C cancels."""
        h = self._handle()
        i = self.info
        x = images_in(images, "images", i.in_channels, i.sample_size)
        n = x.shape[0]
        lab = self._classes(labels, n, "labels")
        T = i.num_train_timesteps
        bpd = np.empty(n, dtype=np.float64)
        tm = np.empty((n, T + 1), dtype=np.float64) if terms else None
        mse = np.empty((n, T), dtype=np.float64) if terms else None

        def run(cb, ctx):
            return lib.ddpm_nll(h, n, fptr(x), iptr(lab), 0 if batch is None else batch, seed, dptr(bpd),
                                dptr(tm) if terms else ffi.NULL, dptr(mse) if terms else ffi.NULL, cb, ctx)

        _lib.long_call(run, progress, handle=h)
        return NLL(bpd, tm, mse) if terms else bpd
