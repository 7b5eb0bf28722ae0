"""trainer.py -- ddpm.Trainer: a training run folder (ddpm_trainer) stepped from Python. Options are the
fields of ddpm_train_options and ddpm_train_cadence by name, read from the header's struct layout, so
they follow include/ddpm.h; run() is the loop `ddpm train` runs (steps in all, a time limit, Ctrl-C
finishing the step and saving)."""
import dataclasses
import os

from . import _lib
from ._convert import cstr, string
from ._lib import ffi, lib


def _fields(ctype):
    return [name for name, _ in ffi.typeof(ctype).fields]


OPTION_FIELDS = [f for f in _fields("ddpm_train_options") if f != "cadence"]
CADENCE_FIELDS = _fields("ddpm_train_cadence")
RECIPES = ("paper", "short")

# ddpm_train_metrics as a dataclass with the header's field names.
Metrics = dataclasses.make_dataclass("Metrics", _fields("ddpm_train_metrics"), frozen=True)
Metrics.__doc__ = "ddpm_train_metrics: the state after a step (include/ddpm.h names each field)."
Metrics.__module__ = __name__


def _value(v):
    if isinstance(v, ffi.CData):
        if ffi.typeof(v) in (ffi.typeof("const char *"), ffi.typeof("char *")):
            return string(v)
    return v


def _struct_dict(s, names):
    return {k: _value(getattr(s, k)) for k in names}


def _set(struct, name, value, keep, what):
    t = dict(ffi.typeof(struct).item.fields)[name].type
    try:
        if t.kind == "pointer":  # const char *
            setattr(struct, name, cstr(value, keep))
        elif isinstance(value, bool):
            setattr(struct, name, int(value))
        else:
            setattr(struct, name, value)
    except (TypeError, OverflowError) as e:
        raise type(e)(f"{what} {name}={value!r}: {e}") from None


def _cadence(cadence, keep, who):
    """A ddpm_train_cadence with the fields of the dict cadence set and the others -1 (unchanged)."""
    c = ffi.new("ddpm_train_cadence *")
    for k in CADENCE_FIELDS:
        setattr(c, k, -1)
    for k, v in cadence.items():
        if k not in CADENCE_FIELDS:
            raise TypeError(f"{who}: unknown cadence field {k!r} (fields: {', '.join(CADENCE_FIELDS)})")
        _set(c, k, v, keep, "cadence")
    return c

class Trainer(_lib.Handle):
    """Trainer(out, data=None, preset=None, recipe=None, **options): a new run in the folder out
    (ddpm_trainer_create; ArgumentError when out already holds one: use Trainer.resume(out)).
    data as ddpm.Dataset takes it (None: Fashion-MNIST); preset "fmnist-small" | "fmnist" | "cifar10"
    (or config=a config.json path); recipe "paper" | "short" (applied before the options); options:
    any field of ddpm_train_options (limit, batch, lr, warmup, clip, ema, ema_warmup, dropout, flip,
    classes, p_uncond, seed, T, schedule, beta_start, beta_end, variance, shards, inception) or of
    its cadence (save_every, log_every, sample_every, sample_n, eval_every, eval_n, tensorboard).
    close() closes metrics.jsonl and saves nothing: call finish() or save() first."""
    _free, _what = "ddpm_trainer_free", "trainer"

    def __init__(self, out, data=None, preset=None, recipe=None, **options):
        self._h = None
        self.out = os.fspath(out)
        keep = []
        o = ffi.new("ddpm_train_options *")
        lib.ddpm_train_options_init(o)
        if recipe is not None:
            if recipe not in RECIPES:
                raise ValueError(f"recipe: one of {', '.join(RECIPES)}, got {recipe!r}")
            _lib.check(lib.ddpm_train_options_recipe(o, recipe.encode()))
        options = dict(options, data=data, preset=preset)
        for k, v in options.items():
            if k in OPTION_FIELDS:
                if v is not None or k in ("data", "preset"):
                    _set(o, k, v, keep, "option")
            elif k in CADENCE_FIELDS:
                _set(ffi.addressof(o, "cadence"), k, v, keep, "option")
            else:
                raise TypeError(f"Trainer: unknown option {k!r} (options: {', '.join(OPTION_FIELDS + CADENCE_FIELDS)})")
        out_p = ffi.new("ddpm_trainer **")
        _lib.call(lib.ddpm_trainer_create, cstr(self.out, keep), o, out_p)
        self._h = out_p[0]

    @classmethod
    def resume(cls, out, inception=None, **cadence):
        """Continues the run in out from its latest checkpoint (ddpm_trainer_resume), with its own
        options; cadence fields given here replace the run's from now on."""
        self = cls.__new__(cls)
        self._h, self.out = None, os.fspath(out)
        keep = []
        c = _cadence(cadence, keep, "Trainer.resume")
        out_p = ffi.new("ddpm_trainer **")
        _lib.call(lib.ddpm_trainer_resume, cstr(self.out, keep), c, cstr(inception, keep), out_p)
        self._h = out_p[0]
        return self

    @staticmethod
    def exists(out):
        """Whether out holds a run to resume (ddpm_run_exists)."""
        keep = []
        with _lib.LOCK:
            return bool(lib.ddpm_run_exists(cstr(os.fspath(out), keep)))

    def __repr__(self):
        return f"<ddpm.Trainer {self.out!r}" + (" (closed)>" if self._h is None else f" at step {self.metrics.step}>")

    # -- state
    @property
    def options(self):
        """The run's options as a dict (ddpm_trainer_get_options), cadence fields included."""
        h = self._handle()
        o = ffi.new("ddpm_train_options *")
        _lib.call(lib.ddpm_trainer_get_options, h, o, handle=h)
        d = _struct_dict(o, OPTION_FIELDS)
        d.update(_struct_dict(o.cadence, CADENCE_FIELDS))
        return d

    @property
    def metrics(self):
        """Metrics of the state now (ddpm_trainer_get_metrics; no step)."""
        h = self._handle()
        m = ffi.new("ddpm_train_metrics *")
        _lib.call(lib.ddpm_trainer_get_metrics, h, m, handle=h)
        return Metrics(**_struct_dict(m, _fields("ddpm_train_metrics")))

    @property
    def step_count(self):
        return self.metrics.step

    def set_cadence(self, **cadence):
        """Changes what the run writes and how often from now on (ddpm_trainer_set_cadence)."""
        h = self._handle()
        keep = []
        c = _cadence(cadence, keep, "set_cadence")
        _lib.call(lib.ddpm_trainer_set_cadence, h, c, handle=h)

    # -- work
    def step(self):
        """One training step (ddpm_trainer_step) and what the cadence asks for; returns its Metrics."""
        h = self._handle()
        m = ffi.new("ddpm_train_metrics *")
        _lib.call(lib.ddpm_trainer_step, h, m, handle=h)
        return Metrics(**_struct_dict(m, _fields("ddpm_train_metrics")))

    def save(self):
        """Writes the checkpoint now (ddpm_trainer_save): out/model, out/model-raw, the training state."""
        h = self._handle()
        _lib.call(lib.ddpm_trainer_save, h, handle=h)

    def sample_grid(self):
        """Writes out/samples/step_NNNNNNNN.png now (ddpm_trainer_sample_grid)."""
        h = self._handle()
        _lib.call(lib.ddpm_trainer_sample_grid, h, handle=h)

    def finish(self):
        """The end of a run (ddpm_trainer_finish): saves unless the last step was saved, and writes the
        grid when sample_every > 0 unless this step has one."""
        h = self._handle()
        _lib.call(lib.ddpm_trainer_finish, h, handle=h)

    def run(self, steps=None, time=None, callback=None):
        """Trains as `ddpm train --steps STEPS --time TIME` does: until the run has done steps steps
        in all, or time seconds have passed, or callback(metrics) returns True after a step; then
        finish() (the checkpoint, the last grid). At least one of steps, time or callback is needed.
        Ctrl-C finishes the step in progress, saves (finish()), and raises KeyboardInterrupt. A failed
        step raises its exception without saving. Returns the last step's Metrics (the state's, when
        no step was taken)."""
        if steps is None and time is None and callback is None:
            raise ValueError("Trainer.run: give steps, time or callback (it would never stop)")
        self._handle()
        t0 = lib.ddpm_now()
        m = None
        try:
            while True:
                if time is not None and lib.ddpm_now() - t0 >= time:
                    break
                if steps is not None and (m.step if m is not None else self.metrics.step) >= steps:
                    break
                m = self.step()
                if callback is not None and callback(m):
                    break
        except KeyboardInterrupt:
            self.finish()
            raise
        self.finish()
        return m if m is not None else self.metrics

    def model(self):
        """The run's model (out/model, the EMA weights as last saved) as a ddpm.Model."""
        from .model import Model
        return Model.load(self.out)
