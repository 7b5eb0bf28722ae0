"""test_cancel.py -- stopping long calls: a progress callback returning True (CancelledError) or raising
(its exception), Ctrl-C (SIGINT: KeyboardInterrupt once the library has stopped, and the model is usable
afterwards, in sample, nll and fid; within the package's 0.25 s poll of the signal and one progress
report), and the GIL released during a call (another thread runs)."""
import signal
import threading
import time

import numpy as np
import pytest

import ddpm
from conftest import noise


def test_progress_true_cancels(model):
    calls = []
    with pytest.raises(ddpm.CancelledError, match="cancel"):
        model.sample(3, steps=10, progress=lambda d, t: calls.append((d, t)) or d >= 3)
    assert calls == [(1, 10), (2, 10), (3, 10)]
    calls.clear()
    model.sample(3, steps=10, progress=lambda d, t: calls.append(d))
    assert calls == list(range(1, 11))


def test_progress_exception_cancels_and_is_raised(model):
    def boom(d, t):
        if d == 2:
            raise ZeroDivisionError("from the callback")

    with pytest.raises(ZeroDivisionError, match="from the callback"):
        model.sample(2, steps=10, progress=boom)
    assert model.sample(1, steps=2).shape == (1, 1, 8, 8)


@pytest.fixture(autouse=True)
def sigint_raises():
    """Ctrl-C raises KeyboardInterrupt here even when the tests were started as a background job of a
    non-interactive shell, which starts them with SIGINT ignored (then Python installs no handler)."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def interrupt_at(k):
    """A progress callback (it runs on ddpm's worker thread) that sends SIGINT to the main thread at
    network call k, as Ctrl-C does; it records every call."""
    calls = []
    main = threading.main_thread().ident

    def cb(d, t):
        calls.append(d)
        if d == k:
            signal.pthread_kill(main, signal.SIGINT)

    return cb, calls


def test_ctrl_c_cancels_sample(model):
    cb, calls = interrupt_at(2)
    t0 = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        model.sample(64, steps=100, progress=cb)
    assert 2 <= calls[-1] < 100 and time.monotonic() - t0 < 30, calls
    x = model.sample(2, sampler="ddim", steps=3, seed=1)  # the model works afterwards
    assert np.array_equal(x, model.sample(2, sampler="ddim", steps=3, seed=1))


def test_ctrl_c_cancels_nll_and_fid(model):
    cb, calls = interrupt_at(1)
    with pytest.raises(KeyboardInterrupt):
        model.nll(noise(2).clip(-1, 1), batch=1, progress=cb)
    assert calls[-1] < 100 * 2
    x = np.random.default_rng(0).uniform(-1, 1, (1000, 1, 28, 28)).astype(np.float32)
    cb, calls = interrupt_at(1)
    with pytest.raises(KeyboardInterrupt):
        ddpm.fid(x, x, batch=1, progress=cb)
    assert calls[-1] < 1000 and len(calls) < 1000, calls


def test_ctrl_c_during_training_saves(tmp_path, tiny_data):
    from conftest import CONFIG
    t = ddpm.Trainer(tmp_path / "run", data=tiny_data, config=CONFIG, batch=8, warmup=0, T=100, save_every=1000)
    main = threading.main_thread().ident

    def stop(m):
        if m.step == 3:
            signal.pthread_kill(main, signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        t.run(steps=1000, callback=stop)
    step = t.metrics.step
    t.close()
    assert 3 <= step < 10
    with ddpm.Model.load(tmp_path / "run") as m:  # finish() saved the step reached
        assert m.run_state()[0] == step


def test_gil_released_during_a_call(model):
    x = noise(256)
    count, stop = [0], threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    th = threading.Thread(target=spin)
    th.start()
    time.sleep(0.05)
    before = count[0]
    t0 = time.monotonic()
    model.eps(x, 50)  # a direct call (not on the worker): cffi drops the GIL around it
    dt = time.monotonic() - t0
    during = count[0] - before
    stop.set()
    th.join()
    assert dt > 0.005 and during > 1000, (dt, during)
