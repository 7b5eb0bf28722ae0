#!/usr/bin/python3
"""test_train_tensorboard.py -- `ddpm train`'s event files (RUN/tb) read by the real TensorBoard
(tensorboard 2.18.0 from PyPI, scripts/install-deps.sh --test): its EventAccumulator sees what
metrics.jsonl says, across resumes.

A tiny model (tests/fixtures/unet_b's config, 8x8x1; 40 images of an IDX file made here) trains 30 steps
with --log-every 5 --sample-every 15 --save-every 10, then is resumed to 45, then its latest state is
damaged and it is resumed again (from the previous state, step 40, to 50: behind step 45, which the
second session logged). After each part:
  * every scalar tag train/<key> has exactly the steps of the metrics.jsonl lines that hold <key> (loss,
    lr, grad_norm, img_per_s, ema_decay, loss_q0..loss_q3), each once, with its value (to the digits
    metrics.jsonl prints), and no other tag;
  * the image "samples" is at each grid's step with the grid file's exact PNG bytes and size;
  * one event file per session, each starting with a SessionLog START; after the fallback, the control:
    without TensorBoard's purge (purge_orphaned_data=False) step 45 shows twice, so the START is what
    keeps the view right.
Then: an FID run (the default preset, --eval-every 2) has eval/fid, precision, recall, broken and out_of_range equal
to its metrics.jsonl line; --no-tensorboard writes no RUN/tb, and its --resume keeps it off; a RUN/tb that
cannot be made (a file in its place) fails the run at the start with a message naming it, exit status
non-zero, and --no-tensorboard then trains.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_train_tensorboard.py
Exits non-zero on any failure.
"""
import json
import logging
import math
import os
import pathlib
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddpmtest import CONFIG, check, ddpm, finish, tiny_idx  # noqa: E402

logging.getLogger("tensorboard").setLevel(logging.ERROR)
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.compat.proto import event_pb2  # noqa: E402

KEYS = ["loss", "lr", "grad_norm", "img_per_s", "ema_decay", "loss_q0", "loss_q1", "loss_q2", "loss_q3"]
# The relative error metrics.jsonl's printing allows (%.6g; img_per_s %.4g), plus float32's rounding.
RTOL = {"img_per_s": 1e-3}


def load(tb, purge=True):
    acc = event_accumulator.EventAccumulator(
        str(tb), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
        purge_orphaned_data=purge)
    return acc.Reload()


def lines(run):
    return [json.loads(l) for l in pathlib.Path(run, "metrics.jsonl").read_text().splitlines()]


def close(a, b, rtol):
    return math.isclose(a, b, rel_tol=rtol, abs_tol=1e-30)


def compare_scalars(acc, rows, keys, prefix, what):
    """Each tag prefix/<key> against the rows that hold key: the same steps, once each, the same values."""
    tags = acc.Tags()["scalars"]
    want_tags = sorted(f"{prefix}/{k}" for k in keys if any(k in r for r in rows))
    check(sorted(t for t in tags if t.startswith(prefix + "/")) == want_tags,
          f"{what}: tags {sorted(tags)}, expected {want_tags}")
    for k in keys:
        want = [(r["step"], r[k]) for r in rows if k in r]
        tag = f"{prefix}/{k}"
        got = [(e.step, e.value) for e in acc.Scalars(tag)] if tag in tags else []
        ok = [s for s, _ in got] == [s for s, _ in want] and all(
            close(g, w, RTOL.get(k, 1e-5)) for (_, g), (_, w) in zip(got, want))
        check(ok, f"{what}: {tag} at steps {[s for s, _ in want]} as in metrics.jsonl"
                  + ("" if ok else f": got {got[:8]}, want {want[:8]}"))


def png_size(b):
    return struct.unpack(">II", b[16:24])


def compare_images(acc, run, what):
    grids = sorted(pathlib.Path(run, "samples").glob("step_*.png"))
    imgs = acc.Images("samples") if "samples" in acc.Tags()["images"] else []
    want = [int(g.stem[5:]) for g in grids]
    check([i.step for i in imgs] == want, f"{what}: images at steps {[i.step for i in imgs]}, grids {want}")
    for i, g in zip(imgs, grids):
        b = g.read_bytes()
        check(i.encoded_image_string == b and (i.width, i.height) == png_size(b),
              f"{what}: image at step {i.step}: {i.width}x{i.height}, the bytes of {g.name}")


def session_starts(tb):
    """The steps of the SessionLog STARTs of each event file, by file name order."""
    out = []
    for f in sorted(pathlib.Path(tb).iterdir()):
        starts = []
        for rec in event_accumulator.event_file_loader.LegacyEventFileLoader(str(f)).Load():
            if rec.HasField("session_log") and rec.session_log.status == event_pb2.SessionLog.START:
                starts.append(rec.step)
        out.append(starts)
    return out


def train(run, *args):
    return ddpm("train", "--out", run, "--threads", "1", *args)


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_test_train_tb_"))
    data = tiny_idx(tmp / "images-idx3-ubyte", 40)
    run, tb = tmp / "run", tmp / "run" / "tb"
    fresh = ["--config", CONFIG, "--data", data, "--batch", "4", "--log-every", "5", "--sample-every", "15",
             "--sample-n", "4", "--save-every", "10"]

    rc, out = train(run, *fresh, "--steps", "30")
    if not check(rc == 0, "train 30 steps" + ("" if rc == 0 else f": {out}")):
        return finish(tmp)
    files = sorted(tb.iterdir()) if tb.is_dir() else []
    check(len(files) == 1 and files[0].name.startswith("events.out.tfevents."), f"one event file: {files}")
    acc = load(tb)
    rows = lines(run)
    check([r["step"] for r in rows] == list(range(5, 31, 5)), f"metrics.jsonl steps {[r['step'] for r in rows]}")
    # The EMA decay of step k: min(0.9999, (1 + k) / (10 + k)) (the default warm-up); a quartile's loss
    # is logged when an image of the line's steps fell in it.
    check(all(close(r["ema_decay"], min(0.9999, (1 + r["step"]) / (10 + r["step"])), 1e-5) for r in rows),
          f"metrics.jsonl: ema_decay {[r['ema_decay'] for r in rows]}")
    check(all(any(f"loss_q{i}" in r for i in range(4)) for r in rows), "metrics.jsonl: loss_q0..q3")
    compare_scalars(acc, rows, KEYS, "train", "30 steps")
    compare_images(acc, run, "30 steps")

    rc, out = train(run, "--resume", "--steps", "45")
    check(rc == 0, "resumed to 45" + ("" if rc == 0 else f": {out}"))
    acc = load(tb)
    rows = lines(run)
    check([r["step"] for r in rows] == list(range(5, 46, 5)), f"metrics.jsonl steps {[r['step'] for r in rows]}")
    compare_scalars(acc, rows, KEYS, "train", "resumed to 45")
    compare_images(acc, run, "resumed to 45")
    check(session_starts(tb) == [[1], [31]], f"a START at each session's first step: {session_starts(tb)}")

    # The latest state (45) damaged: the run falls back on the previous one (40), behind step 45's values.
    st = run / "training_state.safetensors"
    raw = bytearray(st.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    st.write_bytes(bytes(raw))
    rc, out = train(run, "--resume", "--steps", "50")
    check(rc == 0 and "resuming from the previous state" in out, "resumed from the previous state (40) to 50"
          + ("" if rc == 0 else f": {out}"))
    acc = load(tb)
    rows = lines(run)
    check([r["step"] for r in rows] == list(range(5, 51, 5)), f"metrics.jsonl steps {[r['step'] for r in rows]}")
    compare_scalars(acc, rows, KEYS, "train", "after the fallback")
    compare_images(acc, run, "after the fallback")
    check(session_starts(tb) == [[1], [31], [41]], f"STARTs {session_starts(tb)}")
    steps = [e.step for e in load(tb, purge=False).Scalars("train/loss")]
    check(steps.count(45) == 2, f"control: without the purge step 45 shows twice: {steps}")

    # FID, precision, recall (the default preset: F-MNIST features).
    fid = tmp / "fid"
    rc, out = ddpm("train", "--out", fid, "--limit", "16", "--batch", "4", "--steps", "2", "--eval-every", "2",
                   "--eval-n", "10", "--log-every", "1", "--threads", "1")
    if check(rc == 0, "an FID run" + ("" if rc == 0 else f": {out}")):
        rows = [r for r in lines(fid) if "fid" in r]
        check(len(rows) == 1 and rows[0]["step"] == 2, f"one FID line: {rows}")
        compare_scalars(load(fid / "tb"), rows, ["fid", "precision", "recall", "broken", "out_of_range"], "eval", "FID run")

    # --no-tensorboard, kept by --resume.
    quiet = tmp / "quiet"
    rc, out = train(quiet, *fresh, "--steps", "5", "--no-tensorboard")
    check(rc == 0 and not (quiet / "tb").exists(), "--no-tensorboard: no tb/" + ("" if rc == 0 else f": {out}"))
    rc, out = train(quiet, "--resume", "--steps", "10")
    check(rc == 0 and not (quiet / "tb").exists(), "its --resume keeps it off")
    rc, out = train(quiet, "--resume", "--steps", "15", "--tensorboard")
    acc = load(quiet / "tb") if (quiet / "tb").exists() else None
    check(rc == 0 and acc is not None and [e.step for e in acc.Scalars("train/loss")] == [15],
          "--resume --tensorboard turns them on again (step 15 logged)")

    # RUN/tb cannot be made: the run stops at the start, naming it; --no-tensorboard then trains.
    blocked = tmp / "blocked"
    blocked.mkdir()
    (blocked / "tb").write_text("in the way")
    rc, out = train(blocked, *fresh, "--steps", "5")
    check(rc != 0 and f"{blocked}/tb" in out and "--no-tensorboard" in out,
          f"a file in tb/'s place: exit {rc}, {out.strip()[-300:]}")
    check(not (blocked / "training_state.safetensors").exists(), "no state written, so the same command can start again")
    rc, out = train(blocked, *fresh, "--steps", "5", "--no-tensorboard")
    check(rc == 0, "with --no-tensorboard it trains" + ("" if rc == 0 else f": {out}"))
    rc, out = train(blocked, *fresh, "--steps", "5", "--tensorboard")
    check(rc != 0 and "--tensorboard applies to --resume only" in out, f"--tensorboard without --resume: {out.strip()}")
    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
