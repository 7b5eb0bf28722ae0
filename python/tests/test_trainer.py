"""test_trainer.py -- ddpm.Trainer (create, step, run by steps, time and callback, save, finish, resume,
cadence, options) and ddpm.Dataset, with bad options refused."""
import json

import numpy as np
import pytest

import ddpm
from conftest import CONFIG, write_idx


def make(tmp_path, data, **kw):
    return ddpm.Trainer(tmp_path / "run", data=data, config=CONFIG, batch=8, lr=1e-2, warmup=0, T=100, **kw)


def test_step_run_save_resume(tmp_path, tiny_data):
    t = make(tmp_path, tiny_data, log_every=2, seed=3)
    assert ddpm.Trainer.exists(tmp_path / "run") and t.metrics.step == 0
    o = t.options
    assert o["batch"] == 8 and o["T"] == 100 and o["log_every"] == 2 and o["seed"] == 3
    m = t.step()
    assert m.step == 1 and np.isfinite(m.loss) and m.batch == 8 and "32 images" in m.data_desc
    m = t.run(steps=4)
    assert m.step == 4 and t.metrics.step == 4
    seen = []
    m = t.run(steps=100, callback=lambda m: seen.append(m.step) or m.step >= 6)
    assert seen == [5, 6] and m.step == 6
    m = t.run(time=0.0)  # a time limit already reached: no step, but finish() saves
    assert m.step == 6
    t.set_cadence(save_every=1)
    t.save()
    t.close()
    with pytest.raises(ValueError, match="closed"):
        t.step()
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [2, 4, 6]
    r = ddpm.Trainer.resume(tmp_path / "run", log_every=3)
    assert r.metrics.step == 6 and r.options["log_every"] == 3 and r.options["seed"] == 3
    assert r.run(steps=7).step == 7
    r.close()
    with ddpm.Model.load(tmp_path / "run") as m:
        assert m.run_state()[0] == 7


def test_resumed_run_equals_a_straight_one(tmp_path, tiny_data):
    a = make(tmp_path / "a", tiny_data)
    a.run(steps=4)
    a.close()
    b = make(tmp_path / "b", tiny_data)
    b.run(steps=2)
    b.close()
    b = ddpm.Trainer.resume(tmp_path / "b" / "run")
    b.run(steps=4)
    b.close()
    x = np.zeros((1, 1, 8, 8), dtype=np.float32)
    with ddpm.Model.load(tmp_path / "a" / "run") as ma, ddpm.Model.load(tmp_path / "b" / "run") as mb:
        assert np.array_equal(ma.eps(x, 5), mb.eps(x, 5))


def test_sample_grid_and_recipe(tmp_path, tiny_data):
    t = make(tmp_path, tiny_data, recipe=None, sample_every=0, sample_n=4)
    t.step()
    t.sample_grid()
    t.close()
    assert list((tmp_path / "run" / "samples").glob("step_*.png"))
    s = ddpm.Trainer(tmp_path / "short", data=tiny_data, config=CONFIG, recipe="short", T=100, warmup=0)
    assert s.options["batch"] == 32 and s.options["lr"] == 2e-3 and s.options["ema"] == 0.999
    assert s.options["dropout"] == 0
    assert s.options["lr_schedule"] == "cosine" and s.options["loss_weight"] == "min-snr"
    s.close()


def test_precision(tmp_path, tiny_data):
    t = make(tmp_path, tiny_data, precision="bf16-emulated")
    assert t.options["precision"] == "bf16-emulated"
    t.step()
    t.close()
    with pytest.raises(ddpm.ArgumentError, match="fp32, bf16 or bf16-emulated"):
        make(tmp_path / "x", tiny_data, precision="fp16")
    try:  # oneDNN's bf16 kernels where the CPU (and its cap) has them, else a message naming what is missing
        make(tmp_path / "y", tiny_data, precision="bf16").close()
    except ddpm.ArgumentError as e:
        assert "AVX512_BF16" in str(e) and "bf16-emulated" in str(e)


def test_bad_options(tmp_path, tiny_data):
    with pytest.raises(TypeError, match="unknown option 'bach'"):
        make(tmp_path, tiny_data, bach=8)
    with pytest.raises(TypeError):
        make(tmp_path, tiny_data, limit="many")
    with pytest.raises(ValueError, match="recipe"):
        make(tmp_path, tiny_data, recipe="fast")
    with pytest.raises(ddpm.ArgumentError):
        ddpm.Trainer(tmp_path / "r", data=tiny_data, config=CONFIG, batch=0)
    with pytest.raises(ddpm.ArgumentError):
        make(tmp_path, tiny_data, beta_start=0.5, beta_end=0.1)
    with pytest.raises(ddpm.InputError):
        ddpm.Trainer(tmp_path / "r", data=tmp_path / "no-such-data", config=CONFIG)
    with pytest.raises(ddpm.ArgumentError):
        ddpm.Trainer.resume(tmp_path / "no-run")
    with pytest.raises(TypeError, match="unknown cadence"):
        ddpm.Trainer.resume(tmp_path / "no-run", every=3)
    t = make(tmp_path, tiny_data)
    with pytest.raises(ddpm.ArgumentError):
        make(tmp_path, tiny_data)  # the folder holds a run now
    with pytest.raises(ValueError, match="never stop"):
        t.run()
    with pytest.raises(ddpm.ArgumentError):
        t.set_cadence(sample_n=0)
    t.close()


def test_dataset(tmp_path):
    p = write_idx(tmp_path / "d-images-idx3-ubyte", 10, classes=2)
    with ddpm.Dataset(p) as d:
        assert len(d) == 10 and d.info.channels == 1 and d.info.num_classes == 2 and "10 images" in d.info.desc
        assert d.class_names == ["0", "1"]
        x, labels = d.images()
        assert x.shape == (10, 1, 8, 8) and x.dtype == np.float32 and list(labels) == [0, 1] * 5
        u, _ = d.images(2, 3, uint8=True)
        raw = np.frombuffer(p.read_bytes()[16:], dtype=np.uint8).reshape(10, 8, 8)
        assert u.shape == (3, 8, 8, 1) and np.array_equal(u[..., 0], raw[2:5])
        assert np.array_equal(x, raw[:, None].astype(np.float32) / np.float32(127.5) - 1)
        with pytest.raises(ddpm.ArgumentError):
            d.images(8, 5)
    with pytest.raises(ValueError, match="closed"):
        d.images()
    fm = ddpm.Dataset(split="test", limit=5)
    assert fm.info.height == 28 and len(fm) == 5 and fm.class_names[9] == "Ankle boot"
    with pytest.raises(ValueError, match="split"):
        ddpm.Dataset(split="validation")
    with pytest.raises(ddpm.InputError):
        ddpm.Dataset(tmp_path / "missing")
