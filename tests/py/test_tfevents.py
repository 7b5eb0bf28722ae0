#!/usr/bin/python3
"""test_tfevents.py -- the real TensorBoard (tensorboard 2.18.0 from PyPI, scripts/install-deps.sh
--test) reads the event files that ddpm's writer (src/io/tfevents.c) produced.

`$DDPM_BUILD/tests/test_tfevents --write DIR` writes DIR/grid.png and two event files in DIR/tb (what
they hold: write_fixture in tests/test_tfevents.c). TensorBoard's EventAccumulator, which checks
every record's two CRC32Cs, then must see:
  * every scalar at its step with its value (as a float32), and the second file's SessionLog START
    at 21 purging the first file's steps >= 21 (the control: without the purge the old values show);
  * the image with its width, height, colorspace and the PNG file's exact bytes;
  * a copy of the first file cut at every byte of its last two records: every whole record before
    the cut, nothing after it, and no exception (a kill -9 mid-write, or a torn page after a crash);
  * a copy with one byte flipped inside a record's data: the records before it (TensorBoard stops at
    a record whose CRC fails).

    /usr/bin/python3 tests/py/test_tfevents.py        (after make BUILD=... test-build)
Exits non-zero on any failure.
"""
import logging
import os
import pathlib
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ddpmtest import BUILD, check, finish  # noqa: E402

logging.getLogger("tensorboard").setLevel(logging.ERROR)
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def load(path, purge=True):
    """An EventAccumulator over path (a folder or one file) that keeps every value (size 0)."""
    acc = event_accumulator.EventAccumulator(
        str(path), size_guidance={event_accumulator.SCALARS: 0, event_accumulator.IMAGES: 0},
        purge_orphaned_data=purge)
    return acc.Reload()


def scalars(acc, tag):
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


def records(raw):
    """(start, end) of each record of an event file's bytes, by its length fields alone."""
    out, off = [], 0
    while off + 12 <= len(raw):
        (n,) = struct.unpack_from("<Q", raw, off)
        out.append((off, off + 16 + n))
        off += 16 + n
    return out


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_test_tfevents_"))
    writer = pathlib.Path(BUILD, "tests", "test_tfevents")
    p = subprocess.run([str(writer), "--write", str(tmp)], capture_output=True, text=True)
    if not check(p.returncode == 0, f"{writer} --write" + ("" if p.returncode == 0 else f": {p.stdout}{p.stderr}")):
        return finish(tmp)
    file_a, file_b = map(pathlib.Path, p.stdout.split())
    check(file_a.parent == file_b.parent == tmp / "tb" and sorted([file_b.name, file_a.name])[0] == file_a.name,
          f"two event files in tb/, the resumed one sorting after: {file_a.name}, {file_b.name}")

    # ---- scalars, the purge, the image
    acc = load(tmp / "tb")
    tags = acc.Tags()
    check(tags["scalars"] == ["train/loss", "train/lr"] and tags["images"] == ["samples"],
          f"tags {tags['scalars']} {tags['images']}")
    want_loss = [(s, f32(1 / (1 + s))) for s in range(0, 21, 5)] + [(s, f32(1000.0 + s)) for s in (25, 30, 35)]
    got = scalars(acc, "train/loss")
    check(got == want_loss, f"train/loss: steps <= 20 from the first file, 25..35 from the resumed one: {got}")
    got = scalars(acc, "train/lr")
    check(got == [(s, f32(1e-4 * s)) for s in range(0, 21, 5)], f"train/lr up to the SessionLog START: {got}")
    wall = [e.wall_time for e in acc.Scalars("train/loss")]
    check(all(abs(w - wall[0]) < 600 for w in wall) and wall == sorted(wall), "wall times close and in order")
    # The control: without TensorBoard's purge the first file's steps 25..50 show too.
    got = [s for s, _ in scalars(load(tmp / "tb", purge=False), "train/loss")]
    check(got.count(25) == 2 and 50 in got, f"control: no purge, steps {got}")

    png = (tmp / "grid.png").read_bytes()
    imgs = acc.Images("samples") if "samples" in tags["images"] else []
    check(len(imgs) == 1 and imgs[0].step == 20, f"one image at step 20: {[i.step for i in imgs]}")
    if imgs:
        im = imgs[0]
        check((im.width, im.height) == (12, 7), f"image size {im.width}x{im.height}")
        check(im.encoded_image_string == png, f"the PNG's {len(png)} bytes, as written")
    acc_a = load(file_a)
    check(acc_a.FirstEventTimestamp() > 1.7e9, f"first event's wall time {acc_a.FirstEventTimestamp()}")
    check(acc_a.file_version == 2.0, f"file_version {acc_a.file_version}")

    # ---- a file cut at every byte of its last two records, and a flipped byte
    raw = file_a.read_bytes()
    recs = records(raw)
    check(recs[-1][1] == len(raw) and len(recs) == 1 + 11 + 1, f"{len(recs)} records in {len(raw)} bytes")
    full = [(s, v) for s, v in scalars(acc_a, "train/loss")]
    cut_dir = tmp / "cut"
    cut_dir.mkdir()
    cut = cut_dir / file_a.name
    bad = []
    # The last two records: step 50 (scalars) and, before it, step 45.
    for at in range(recs[-2][0], len(raw)):
        cut.write_bytes(raw[:at])
        try:
            got = scalars(load(cut), "train/loss")
        except Exception as e:  # noqa: BLE001 -- any exception is the failure being looked for
            bad.append(f"cut at {at}: {type(e).__name__}: {e}")
            continue
        want = full[:-1] if at >= recs[-1][0] else full[:-2]
        if got != want:
            bad.append(f"cut at {at}: steps {[s for s, _ in got]}")
    check(not bad, f"cut at each of {len(raw) - recs[-2][0]} bytes: every whole record before the cut "
                   f"loads{'; ' + '; '.join(bad[:3]) if bad else ''}")
    # A flipped byte in the data of the record of step 25 (record 6: version, steps 0..20 with the image
    # at 20, then 25): TensorBoard keeps what came before.
    i25 = 1 + 5 + 1
    dmg = bytearray(raw)
    dmg[recs[i25][0] + 14] ^= 0x40
    cut.write_bytes(bytes(dmg))
    got = [s for s, _ in scalars(load(cut), "train/loss")]
    check(got == [0, 5, 10, 15, 20], f"a damaged record at step 25: the steps before it load: {got}")
    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
