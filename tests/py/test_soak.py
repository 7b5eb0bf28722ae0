#!/usr/bin/python3
"""test_soak.py -- kill -9 at any moment never costs a run its state, nor a bit of its result.

A tiny model (tests/fixtures/unet_b's config, 8x8x1; 40 images of an IDX file made here) trains with
--save-every 1 --log-every 1. It is SIGKILLed after a random delay (most land inside a save: with
--save-every 1 the saves, with their fsyncs, are most of each step; some land in the start-up, some in the
very first save), then continued with `--resume` and no other flags (the run keeps its --save-every and
--log-every), again and again, until DDPM_SOAK_KILLS kills (default 20) or DDPM_SOAK_S seconds (default
60), whichever comes first. A last `--resume` runs to a few steps past the last saved one. Checks:
  * after every kill there is a state to resume from (a run killed before its first save starts afresh):
    `--resume` never fails, and never needs the previous state (the latest is always whole);
  * the final training_state.safetensors and model weights are byte-identical to those of one
    uninterrupted run to the same step;
  * metrics.jsonl holds each step 1..N once, in order, with the uninterrupted run's loss and grad norm;
  * TensorBoard (its EventAccumulator) loads the run's event files (RUN/tb) after every kill, a record
    cut by the kill or not, and at the end shows train/loss and train/grad_norm at each step 1..N once,
    with metrics.jsonl's values (each resumed session's SessionLog START purges the steps a killed one
    logged past its last save).

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_soak.py
    DDPM_SOAK_KILLS=200 DDPM_SOAK_S=3600 DDPM_BUILD=build /usr/bin/python3 tests/py/test_soak.py   # long
Exits non-zero on any failure.
"""
import logging
import math
import os
import pathlib
import struct
import random
import signal
import subprocess
import sys
import tempfile
import time

from ddpmtest import CONFIG, DDPM, check, finish, metrics, saved_step, tiny_idx  # noqa: E402

logging.getLogger("tensorboard").setLevel(logging.ERROR)
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

KILLS = int(os.environ.get("DDPM_SOAK_KILLS", "20"))
SECONDS = float(os.environ.get("DDPM_SOAK_S", "60"))
SEED = int(os.environ.get("DDPM_SOAK_SEED", str(random.randrange(1 << 30))))
ENV = dict(os.environ, OMP_WAIT_POLICY="passive", ASAN_OPTIONS="detect_leaks=0:" + os.environ.get("ASAN_OPTIONS", ""))
STATE, PREV = "training_state.safetensors", "training_state.prev.safetensors"


def in_window(run, p, not_before):
    """Waits (after not_before, at most 3 s more) until the latest and previous state files are one file,
    inside a state save. True if it got there."""
    while time.time() < not_before and p.poll() is None:
        time.sleep(0.005)
    end = time.time() + 3
    while time.time() < end and p.poll() is None:
        try:
            if os.stat(run / STATE).st_ino == os.stat(run / PREV).st_ino:
                return True
        except OSError:
            pass
    return False


def tb_view(tb):
    """{tag: [(step, value)]} of train/loss and train/grad_norm as TensorBoard shows the folder tb."""
    acc = event_accumulator.EventAccumulator(str(tb), size_guidance={event_accumulator.SCALARS: 0}).Reload()
    tags = acc.Tags()["scalars"]
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] if t in tags else [] for t in ("train/loss", "train/grad_norm")}


def torn(f):
    """Whether the event file f ends inside a record (by its length fields)."""
    raw, off = f.read_bytes(), 0
    while off + 8 <= len(raw):
        off += 16 + struct.unpack_from("<Q", raw, off)[0]
    return off != len(raw)


def main():
    rng = random.Random(SEED)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_soak_"))
    data = tiny_idx(tmp / "images-idx3-ubyte", 40)
    fresh = ["--config", CONFIG, "--data", str(data), "--batch", "4", "--dropout", "0.1", "--flip",
             "--save-every", "1", "--log-every", "1", "--threads", "1"]
    run = tmp / "run"
    print(f"seed {SEED} (DDPM_SOAK_SEED), at most {KILLS} kills or {SECONDS:.0f} s", flush=True)

    kills = starts = in_state = in_models = aimed = 0
    tb_bad, tb_torn = [], 0
    t0 = time.time()
    while kills < KILLS and time.time() - t0 < SECONDS:
        resume = (run / STATE).exists() or (run / PREV).exists()
        # (--threads is not kept by a run: an unsharded network, batch < 8, rounds by thread count)
        args = ["--resume", "--threads", "1"] if resume else fresh
        starts += not resume
        log = tmp / "log.txt"
        with open(log, "w") as lf:
            p = subprocess.Popen([DDPM, "train", "--out", str(run), "--steps", "1000000", *args], env=ENV,
                                 stdout=lf, stderr=subprocess.STDOUT)
            # A third of the kills aimed at the heart of a state save: the moment the latest state also
            # has its previous name (file_keep_previous) and the new one is being written; the rest after
            # a random delay, mostly short (start-up, the first saves), some long (a run of saves).
            u = rng.random()
            if u < 1 / 3:
                aimed += in_window(run, p, time.time() + rng.uniform(0.2, 1.5))
            else:
                time.sleep(rng.uniform(0, 0.3) if u < 2 / 3 else rng.uniform(0.3, 1.5))
            rc = p.poll()
            if rc is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait()
                kills += 1
        text = log.read_text()
        if rc is not None:  # it ended by itself: only a failure can do that
            check(False, f"a {'resumed' if resume else 'fresh'} run ended by itself (rc {rc}):\n{text}")
            break
        if "resuming from the previous state" in text or "no usable training state" in text:
            check(False, f"kill {kills}: the latest state was not whole:\n{text}")
            break
        try:  # TensorBoard reads what the kill left, whatever it cut
            if (run / "tb").is_dir():
                tb_view(run / "tb")
                tb_torn += sum(torn(f) for f in (run / "tb").iterdir())
        except Exception as e:  # noqa: BLE001 -- any exception is the failure being looked for
            tb_bad.append(f"kill {kills}: {type(e).__name__}: {e}")
        left = list(run.glob("**/*.tmp.*"))  # what a killed save leaves (file_write_atomic's temporary files)
        in_state += any(f.name.startswith(STATE) for f in left)
        in_models += any(f.parent.name.startswith("model") for f in left)
        for f in left:
            f.unlink()

    last = saved_step(run / STATE)
    check(last is not None, f"{kills} kills in {time.time() - t0:.0f} s ({starts} fresh starts), the last state "
                            f"at step {last}; {aimed} aimed inside a state save; caught writing the state: {in_state}, the model folders: "
                            f"{in_models} (the rest: elsewhere in a save, or in a step)")
    check(not tb_bad, f"TensorBoard loaded RUN/tb after every kill (files ending inside a record, summed over the "
                      f"kills: {tb_torn})" + ("" if not tb_bad else ": " + "; ".join(tb_bad[:3])))
    if last is None:
        return finish(tmp, f" (seed {SEED})")
    final = last + 3
    p = subprocess.run([DDPM, "train", "--out", str(run), "--resume", "--steps", str(final), "--threads", "1"], env=ENV,
                       capture_output=True, text=True, timeout=300)
    check(p.returncode == 0 and f"resuming at step {last}" in p.stderr,
          f"--resume from step {last} to {final} (rc {p.returncode})" + ("" if p.returncode == 0 else "\n" + p.stderr))
    ref = tmp / "ref"
    q = subprocess.run([DDPM, "train", "--out", str(ref), "--steps", str(final), *fresh], env=ENV,
                       capture_output=True, text=True, timeout=600)
    check(q.returncode == 0, f"the uninterrupted run to step {final} (rc {q.returncode})" +
          ("" if q.returncode == 0 else "\n" + q.stderr))
    if p.returncode == 0 and q.returncode == 0:
        check((run / STATE).read_bytes() == (ref / STATE).read_bytes(),
              f"step {final}: training_state.safetensors byte-identical to the uninterrupted run")
        w = "model/diffusion_pytorch_model.safetensors"
        check((run / w).read_bytes() == (ref / w).read_bytes(), "the EMA model weights byte-identical")
        got, want = metrics(run), metrics(ref)
        check([s for s, _, _ in got] == list(range(1, final + 1)), f"metrics.jsonl: steps 1..{final} once each")
        check(got == want, "metrics.jsonl: the uninterrupted run's loss and grad norm at every step")
        view = tb_view(run / "tb")
        f32 = lambda x: struct.unpack("<f", struct.pack("<f", x))[0]  # noqa: E731
        for i, tag in ((1, "train/loss"), (2, "train/grad_norm")):
            ok = [s for s, _ in view[tag]] == [r[0] for r in got] and all(
                math.isclose(v, f32(r[i]), rel_tol=1e-5) for (_, v), r in zip(view[tag], got))
            check(ok, f"TensorBoard: {tag} at each step 1..{final} once, as in metrics.jsonl, over "
                      f"{len(list((run / 'tb').iterdir()))} event files")
    return finish(tmp, f" (seed {SEED})")


if __name__ == "__main__":
    sys.exit(main())
