"""test_model.py -- ddpm.Model: loading, what it says about itself, eps, diffuse, sample and nll, with
the conversions (float32 NCHW passed as is, uint8 NHWC converted) and every bad input refused with an
exception (wrong dtype, shape, non-contiguous arrays, out-of-range values, a closed model)."""
import numpy as np
import pytest

import ddpm
from conftest import noise


def test_load_info_and_configs(model, tiny_run):
    i = model.info
    assert (i.sample_size, i.in_channels, i.out_channels, i.num_train_timesteps) == (8, 1, 1, 100)
    assert i.num_classes == 0 and i.null_class == -1 and i.block_out_channels == (8, 16, 16)
    assert i.dir.endswith("model") and i.beta_schedule == "linear" and i.num_parameters > 0
    assert model.config["sample_size"] == 8 and model.scheduler_config["num_train_timesteps"] == 100
    assert model.class_names == []
    step, options = model.run_state()
    assert step == 8 and options["batch"] == 8
    assert "1x8x8" in repr(model)
    with ddpm.Model.load(tiny_run / "model") as plain:  # a plain model folder has no run state
        assert plain.run_state() == (None, None)


def test_eps_shapes_and_determinism(model):
    x = noise(3)
    e = model.eps(x, [0, 40, 99])
    assert e.shape == (3, 1, 8, 8) and e.dtype == np.float32 and np.isfinite(e).all()
    assert np.array_equal(model.eps(x, np.array([0, 40, 99], dtype=np.int64)), e)
    one = model.eps(x[1:2], 40)  # a scalar t broadcasts
    assert np.allclose(one, e[1:2], atol=1e-5)


def test_eps_takes_uint8_nhwc(model):
    u = np.random.default_rng(1).integers(0, 256, (2, 8, 8, 1), dtype=np.uint8)
    f = (u.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(127.5) - np.float32(1))
    assert np.array_equal(model.eps(u, 10), model.eps(np.ascontiguousarray(f), 10))
    assert np.array_equal(model.eps(u[..., 0], 10), model.eps(u, 10))  # [N, H, W] gray


def test_diffuse(model):
    x0 = noise(2, seed=3).clip(-1, 1)
    nz = noise(2, seed=4)
    xt = model.diffuse(x0, [0, 99], noise=nz)
    abar = np.cumprod(1 - np.linspace(1e-4, 0.02, 100))[[0, 99]].reshape(2, 1, 1, 1)  # Eq. 4, linear betas
    assert xt.shape == x0.shape and np.allclose(xt, np.sqrt(abar) * x0 + np.sqrt(1 - abar) * nz, atol=1e-5)
    assert np.array_equal(model.diffuse(x0, 0, seed=5), model.diffuse(x0, 0, seed=5))


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm++2m"])
def test_sample(model, sampler):
    x = model.sample(3, sampler=sampler, steps=5, seed=1)
    assert x.shape == (3, 1, 8, 8) and x.dtype == np.float32 and np.abs(x).max() <= 1
    assert np.array_equal(model.sample(3, sampler=sampler, steps=5, seed=1), x)
    assert not np.array_equal(model.sample(3, sampler=sampler, steps=5, seed=2), x)
    r = model.last_report
    assert r.images == 3 and r.pixels == 3 * 64


def test_sample_uint8_and_options(model):
    x = model.sample(2, sampler="ddim", steps=4, seed=3)
    u = model.sample(2, sampler="ddim", steps=4, seed=3, uint8=True)
    assert u.shape == (2, 8, 8, 1) and u.dtype == np.uint8 and u.flags.c_contiguous
    assert np.array_equal(u[..., 0], np.floor((x[:, 0] + 1) * 127.5 + 0.5).astype(np.uint8))
    raw = model.sample(2, sampler="ddim", steps=4, seed=3, raw=True, spacing="trailing", x0="none", batch=1)
    assert raw.shape == (2, 1, 8, 8)
    start = noise(2)
    # with x_T given, deterministic DDIM does not depend on the seed
    a = model.sample(2, sampler="ddim", steps=3, noise=start)
    assert np.array_equal(a, model.sample(2, sampler="ddim", steps=3, noise=start, seed=9))
    assert not np.array_equal(a, model.sample(2, sampler="ddim", steps=3, noise=-start))
    b = model.sample(2, sampler="ddim", steps=3, noise=start, precision="bf16-emulated")
    assert not np.array_equal(a, b) and np.abs(a - b).max() < 0.1
    with pytest.raises(ddpm.ArgumentError, match="precision"):
        model.sample(2, precision="int8")


def test_conditional_sample_eps_and_nll(cond_run):
    with ddpm.Model.load(cond_run) as m:
        i = m.info
        assert i.num_classes == 3 and i.null_class == 3 and m.class_names == ["0", "1", "2"]
        a = m.sample(3, steps=3, classes=[0, 1, 2], guidance=2.0)
        assert np.array_equal(m.sample(3, steps=3, classes=["0", "1", "2"], guidance=2.0), a)
        assert np.array_equal(m.sample(3, steps=3, classes=np.array([0, 1, 2]), guidance=2.0), a)
        assert not np.array_equal(m.sample(3, steps=3, classes=1, guidance=2.0), a)
        # The guidance interval: (0, 2], the default, and "all" guide every step of this T = 100 schedule (its
        # largest sigma_t is below 2); an interval beyond them all is plain conditioning (to the rounding of a
        # network of twice the rows).
        assert np.array_equal(m.sample(3, steps=3, classes=[0, 1, 2], guidance=2.0, guidance_interval=(0, 2)), a)
        assert np.array_equal(m.sample(3, steps=3, classes=[0, 1, 2], guidance=2.0, guidance_interval="all"), a)
        plain = m.sample(3, steps=3, classes=[0, 1, 2], guidance=1.0)
        none = m.sample(3, steps=3, classes=[0, 1, 2], guidance=2.0, guidance_interval=(50, 60))
        assert np.abs(none - plain).max() < 1e-5 < np.abs(plain - a).max()
        assert not np.array_equal(m.sample(3, steps=3, classes=[0, 1, 2], guidance=2.0, guidance_rescale=0.5), a)
        with pytest.raises(ddpm.ArgumentError, match="guidance_interval"):
            m.sample(1, classes=0, guidance_interval=(2, 1))
        x = noise(2)
        assert not np.array_equal(m.eps(x, 5, classes=[0, 1]), m.eps(x, 5))
        assert m.nll(x.clip(-1, 1), labels=[0, 1], batch=2).shape == (2,)
        with pytest.raises(ValueError, match="no class"):
            m.sample(1, classes="boots")
        with pytest.raises(ddpm.ArgumentError):
            m.eps(x, 5, classes=[0, 7])


def test_nll(model):
    x = noise(2).clip(-1, 1)
    bpd = model.nll(x, batch=2)
    assert bpd.shape == (2,) and bpd.dtype == np.float64 and (bpd > 0).all()
    full = model.nll(x, batch=2, terms=True)
    assert np.array_equal(full.bpd, bpd) and full.terms.shape == (2, 101) and full.mse.shape == (2, 100)
    calls = []
    model.nll(x[:1], batch=1, progress=lambda d, t: calls.append((d, t)))
    assert calls and calls[-1][0] == calls[-1][1]


BAD_X = [
    (np.zeros((1, 1, 8, 8), dtype=np.float64), TypeError, "float64"),
    (np.zeros((1, 1, 8, 8), dtype=np.int32), TypeError, "int32"),
    ([[0.0]], TypeError, "numpy array"),
    (np.zeros((1, 8, 8), dtype=np.float32), ValueError, r"\[N, C, H, W\]"),
    (np.zeros((1, 2, 8, 8), dtype=np.float32), ValueError, "channels"),
    (np.zeros((1, 1, 16, 16), dtype=np.float32), ValueError, "16x16"),
    (np.zeros((0, 1, 8, 8), dtype=np.float32), ValueError, "no images"),
    (np.zeros((1, 1, 8, 16), dtype=np.float32)[:, :, :, ::2], ValueError, "contiguous"),
    (np.zeros((1, 8, 8, 1, 1), dtype=np.uint8), ValueError, "uint8"),
]


@pytest.mark.parametrize("x,exc,match", BAD_X)
def test_bad_images_are_refused(model, x, exc, match):
    with pytest.raises(exc, match=match):
        model.eps(x, 0)
    with pytest.raises(exc, match=match):
        model.nll(x)


def test_bad_arguments_are_refused(model):
    x = noise(2)
    with pytest.raises(ddpm.ArgumentError, match="t"):
        model.eps(x, 100)  # t out of 0..T-1: the library's check
    with pytest.raises(ValueError, match="2 values"):
        model.eps(x, [1, 2, 3])
    with pytest.raises(TypeError):
        model.eps(x, [0.5, 1.5])
    with pytest.raises(ddpm.ArgumentError):
        model.eps(np.full((1, 1, 8, 8), np.nan, dtype=np.float32), 0)  # non-finite x
    with pytest.raises(ValueError, match="n"):
        model.sample(0)
    with pytest.raises(TypeError):
        model.sample(1.5)
    with pytest.raises(ValueError, match="sampler"):
        model.sample(1, sampler="euler")
    with pytest.raises(ValueError, match="x0"):
        model.sample(1, x0="bogus")
    with pytest.raises(ddpm.ArgumentError, match="steps"):
        model.sample(1, steps=5000)
    with pytest.raises(ddpm.ArgumentError):
        model.sample(1, sampler="ddpm", eta=0.5)  # eta is DDIM's
    with pytest.raises(ddpm.ArgumentError):
        model.sample(1, spacing="sideways")
    with pytest.raises(OverflowError):
        model.sample(1, seed=-1)
    with pytest.raises(ValueError, match="noise"):
        model.sample(3, noise=noise(2))
    with pytest.raises(ValueError):
        model.sample(1, classes=[0, 1])  # an unconditional model: n classes still checked
    with pytest.raises(TypeError):
        ddpm.Model.load(None)
    assert np.isfinite(model.eps(x, 3)).all()  # the model is still fine


def test_closed_model(tiny_run):
    m = ddpm.Model.load(tiny_run)
    m.close()
    m.close()
    assert m.closed and "closed" in repr(m)
    for call in (lambda: m.info, lambda: m.eps(noise(1), 0), lambda: m.sample(1), lambda: m.nll(noise(1)),
                 lambda: m.config, lambda: m.run_state(), lambda: m.diffuse(noise(1), 0)):
        with pytest.raises(ValueError, match="closed"):
            call()
