#!/usr/bin/python3
"""test_stress.py -- train and sample over a matrix of thread counts and batch sizes: nothing crashes,
nothing is non-finite, and what ddpm promises to be bit-identical is (docs/determinism.md).

For each network (tests/fixtures/unet_b, 8x8, on tiny IDX noise; the fmnist-small preset, 28x28, on 64
synthetic images), each batch size (1, 3, 8, 16) and each thread count (1, 2, 3, 8):
  * `ddpm train --steps 2` (dropout and flips on, no warm-up) exits 0; the logged losses and the saved
    weights (model/ and model-raw/) are finite;
  * `ddpm sample --n 2 --steps 3 --raw` with each sampler (ddpm, ddim, dpm++2m) from that run at the same
    thread count exits 0 and writes 2 finite images of the right shape;
  * --resume: 1 step, then --resume to step 2, ends with the training state (weights, EMA, Adam moments)
    and the logged losses byte-identical to the 2-step run. For sharded batches (unet_shard_count: 8 and
    more images) the resumed step runs at the next thread count (1->2->3->8->1), which is promised too.
Bit-identity that is promised and checked:
  * sharded batches (8, 16): the training state and losses after 2 steps are the same bytes for every
    thread count;
  * sampling a sharded batch (--n 8 --batch 8: two shards) from one model: samples.npy is the same bytes
    for every thread count, with each sampler.
Not asserted (not promised): anything across batch sizes, and unsharded batches (1, 3; the --n 2 samples)
across thread counts -- those run multi-threaded operators; differences there are only reported (info).

Time on 2 cores (Zen 3): ~70 s in the normal build; ~105 s under SAN=1 (~180 s for the full matrix).
Under the sanitizers (SAN=1; detected from the binary's libasan, or DDPM_STRESS_SAN=1) the matrix is
thinner: unet_b still trains at every thread count and batch size (one sampler per cell, rotating), the
rest (fmnist-small first along a diagonal) runs while the time budget lasts.
DDPM_STRESS_BUDGET=SECONDS sets the budget for the optional part (default 210, SAN 360);
DDPM_STRESS_FULL=1 runs everything regardless. Prints the matrix covered and the time at the end.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_stress.py
Exits non-zero on any failure, naming the command and showing the end of its output.
"""
import array
import json
import math
import os
import pathlib
import shlex
import signal
import struct
import subprocess
import sys
import tempfile
import time

from ddpmtest import BUILD, CONFIG, DDPM, check, finish, metrics, tiny_idx, write_idx  # noqa: E402

THREADS = (1, 2, 3, 8)
BATCHES = (1, 3, 8, 16)
SAMPLERS = ("ddpm", "ddim", "dpm++2m")
CONFIGS = ("unet_b", "fmnist-small")
STATE = "training_state.safetensors"

ENV = dict(os.environ, OMP_WAIT_POLICY=os.environ.get("OMP_WAIT_POLICY", "passive"))


def sanitized():
    """True for a sanitizer build: DDPM_STRESS_SAN if set, else whether the binary needs libasan."""
    v = os.environ.get("DDPM_STRESS_SAN")
    if v is not None:
        return v not in ("", "0")
    try:
        d = subprocess.run(["readelf", "-d", DDPM], capture_output=True, text=True, timeout=30).stdout
        if "libasan" in d:
            return True
    except (OSError, subprocess.SubprocessError):
        pass
    return "san" in pathlib.Path(BUILD).resolve().name


SAN = sanitized()
FULL = os.environ.get("DDPM_STRESS_FULL", "") not in ("", "0")
BUDGET = float(os.environ.get("DDPM_STRESS_BUDGET", "360" if SAN else "210"))
TIMEOUT = 600 if SAN else 180  # one command; a hang is a failure
T0 = time.time()


def sharded(batch):
    """unet_shard_count(batch) > 1 (src/model/unet.c): 8 and more images."""
    return batch // 4 >= 2


def elapsed():
    return time.time() - T0


# ---- running commands ------------------------------------------------------------------------------

def describe_rc(rc):
    if rc is None:
        return "timed out"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit {rc}"


def tail(text, lines=30 if SAN else 15):
    t = text.rstrip().splitlines()
    return "\n".join("      | " + l for l in t[-lines:]) if t else "      | (no output)"


def run(args, what):
    """Runs ddpm ARGS. Returns (ok, output); a failure is a FAIL line naming the command, with the end of
    its output."""
    cmd = [DDPM, *map(str, args)]
    try:
        p = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=TIMEOUT)
        rc, out = p.returncode, p.stdout + p.stderr
    except subprocess.TimeoutExpired as e:
        rc = None
        out = (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
    if rc != 0:
        check(False, f"{what}: {describe_rc(rc)}\n      $ {shlex.join(cmd)}\n{tail(out)}")
        return False, out
    return True, out


# ---- reading ddpm's outputs ------------------------------------------------------------------------

def all_finite(raw):
    a = array.array("f")
    a.frombytes(raw[:len(raw) // 4 * 4])
    return all(map(math.isfinite, a))


def safetensors_finite(path):
    """None when every F32 tensor of the file is finite, else what is wrong."""
    raw = pathlib.Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    data = memoryview(raw)[8 + n:]
    count = 0
    for name, t in head.items():
        if name == "__metadata__" or t.get("dtype") != "F32":
            continue
        a, b = t["data_offsets"]
        count += 1
        if not all_finite(bytes(data[a:b])):
            return f"tensor {name} has non-finite values"
    return None if count else "no F32 tensors"


def read_npy(path):
    """(shape, float32 bytes) of a little-endian float32 .npy file."""
    raw = pathlib.Path(path).read_bytes()
    if raw[:6] != b"\x93NUMPY":
        raise ValueError("not an .npy file")
    if raw[6] == 1:
        (hl,) = struct.unpack("<H", raw[8:10])
        off = 10
    else:
        (hl,) = struct.unpack("<I", raw[8:12])
        off = 12
    hdr = raw[off:off + hl].decode("latin1")
    if "'<f4'" not in hdr or "'fortran_order': False" not in hdr:
        raise ValueError(f"unexpected header {hdr.strip()}")
    shape = tuple(int(s) for s in hdr.split("'shape':")[1].split("(")[1].split(")")[0].split(",") if s.strip())
    return shape, raw[off + hl:]


# ---- the matrix ------------------------------------------------------------------------------------

class Cell:
    """One (network, threads, batch): what it runs and what came of it."""

    def __init__(self, cfg, threads, batch, samplers, resume, required):
        self.cfg, self.t, self.b = cfg, threads, batch
        self.samplers, self.resume, self.required = samplers, resume, required
        self.done = []      # what ran and passed
        self.failed = []    # what failed
        self.ran = False
        self.seconds = 0.0

    def name(self):
        return f"{self.cfg} threads {self.t} batch {self.b}"


class Stress:
    def __init__(self, tmp):
        self.tmp = tmp
        unet_b_data = tiny_idx(tmp / "unet_b-images-idx3-ubyte", 40)
        n = 64  # 28x28 "images": smooth gradients plus a per-image offset, reproducible
        pixels = ((((x * 9 + y * 5 + i * 37) % 256) ^ ((i * 2654435761 + x * y) >> 3 & 31)) & 255
                  for i in range(n) for y in range(28) for x in range(28))
        fm_data = write_idx(tmp / "fm-images-idx3-ubyte", (pixels, n, 28, 28))
        common = ["--steps", "2", "--log-every", "1", "--save-every", "1000", "--dropout", "0.1", "--flip",
                  "--warmup", "0", "--lr", "1e-3"]
        self.base = {"unet_b": ["--config", CONFIG, "--data", str(unet_b_data), *common],
                     "fmnist-small": ["--preset", "fmnist-small", "--data", str(fm_data), *common]}
        self.size = {"unet_b": (1, 8, 8), "fmnist-small": (1, 28, 28)}
        self.runs = {}        # (cfg, t, b) -> run folder of a successful 2-step run
        self.cfg_time = {c: 0.0 for c in CONFIGS}
        self.small = {}       # (cfg, t, b, sampler) -> samples.npy bytes of --n 2 (for the info lines)
        self.skipped = []
        self.notes = []

    def out(self, *parts):
        return self.tmp / "_".join(str(p) for p in parts).replace("+", "p")

    def train(self, cell, out, steps, threads, resume=False):
        if resume:
            args = ["train", "--out", out, "--resume", "--steps", steps, "--threads", threads]
        else:
            args = ["train", "--out", out, *self.base[cell.cfg], "--threads", threads, "--batch", cell.b]
            args[args.index("--steps") + 1] = steps
        return run(args, f"{cell.name()}: train{' --resume' if resume else ''} to step {steps} at {threads} "
                         f"thread(s)")

    def run_cell(self, cell):
        t0 = time.time()
        cell.ran = True
        run_dir = self.out(cell.cfg, "t", cell.t, "b", cell.b)
        ok, _ = self.train(cell, run_dir, 2, cell.t)
        if ok:
            bad = self.train_finite(run_dir)
            if bad:
                check(False, f"{cell.name()}: {bad}")
                cell.failed.append("finite")
            else:
                self.runs[(cell.cfg, cell.t, cell.b)] = run_dir
                cell.done.append("train")
        else:
            cell.failed.append("train")
        if "train" in cell.done:
            for s in cell.samplers:
                so = self.out(cell.cfg, "t", cell.t, "b", cell.b, "sample", s)
                r = self.sample(f"{cell.name()}: sample --sampler {s}", run_dir, so, s, cell.t, 2, 2,
                                self.size[cell.cfg])
                if r is not None:
                    cell.done.append(s)
                    self.small[(cell.cfg, cell.t, cell.b, s)] = r
                else:
                    cell.failed.append(s)
        if cell.resume and "train" in cell.done:
            self.check_resume(cell, run_dir)
        cell.seconds = time.time() - t0
        self.cfg_time[cell.cfg] += cell.seconds
        if not cell.failed:
            check(True, f"{cell.name()}: {', '.join(cell.done)} ({cell.seconds:.1f} s)")

    def train_finite(self, run_dir):
        try:
            for step, loss, gn in metrics(run_dir):
                if not (math.isfinite(loss) and math.isfinite(gn)):
                    return f"step {step}: loss {loss}, grad norm {gn} not finite"
            for m in ("model", "model-raw"):
                bad = safetensors_finite(run_dir / m / "diffusion_pytorch_model.safetensors")
                if bad:
                    return f"{m}: {bad}"
        except (OSError, ValueError, KeyError, struct.error) as e:
            return f"unreadable outputs in {run_dir}: {e}"
        return None

    def sample(self, what, model, out, sampler, threads, n, batch, chw):
        """Samples n images; returns samples.npy's float bytes when all went well, else None."""
        ok, log = run(["sample", "--model", model, "--out", out, "--n", n, "--batch", batch, "--sampler", sampler,
                       "--steps", "3", "--threads", threads, "--raw"], what)
        if not ok:
            return None
        try:
            shape, data = read_npy(out / "samples.npy")
        except (OSError, ValueError, IndexError) as e:
            check(False, f"{what}: samples.npy unreadable: {e}")
            return None
        if shape != (n, *chw) or len(data) != 4 * n * chw[0] * chw[1] * chw[2]:
            check(False, f"{what}: samples.npy has shape {shape}, {len(data)} bytes; expected {(n, *chw)}")
            return None
        if not all_finite(data):
            check(False, f"{what}: non-finite samples\n{tail(log)}")
            return None
        return data

    def check_resume(self, cell, run_dir):
        """1 step, --resume to 2 (at the next thread count for sharded batches): the straight run's bytes."""
        t2 = THREADS[(THREADS.index(cell.t) + 1) % len(THREADS)] if sharded(cell.b) else cell.t
        rd = self.out(cell.cfg, "t", cell.t, "b", cell.b, "resume")
        ok, _ = self.train(cell, rd, 1, cell.t)
        ok = ok and self.train(cell, rd, 2, t2, resume=True)[0]
        if not ok:
            cell.failed.append("resume")
            return
        same = (rd / STATE).read_bytes() == (run_dir / STATE).read_bytes()
        same_log = metrics(rd) == metrics(run_dir)
        if same and same_log:
            cell.done.append(f"resume@{t2}" if t2 != cell.t else "resume")
            return
        check(False, f"{cell.name()}: 1 step at {cell.t} thread(s) + --resume to step 2 at {t2} is NOT byte-identical "
                     f"to 2 steps straight ({'training state' if not same else ''}"
                     f"{' and ' if not (same or same_log) else ''}{'logged losses' if not same_log else ''} differ; "
                     f"folders {rd} and {run_dir})")
        cell.failed.append("resume")

    # -- identities across thread counts --

    def train_identity(self, cfg):
        for b in BATCHES:
            have = [t for t in THREADS if (cfg, t, b) in self.runs]
            if len(have) < 2:
                continue
            ref = have[0]
            ref_state = (self.runs[(cfg, ref, b)] / STATE).read_bytes()
            ref_log = metrics(self.runs[(cfg, ref, b)])
            if sharded(b):
                for t in have[1:]:
                    d = self.runs[(cfg, t, b)]
                    same, same_log = (d / STATE).read_bytes() == ref_state, metrics(d) == ref_log
                    losses = [l for _, l, _ in metrics(d)]
                    detail = "" if same_log else f": losses {losses} vs {[l for _, l, _ in ref_log]}"
                    check(same and same_log, f"{cfg} batch {b} (sharded): training state "
                                             f"{'and losses ' if same_log else ''}at {t} threads "
                                             f"{'byte-identical to' if same else 'DIFFER from'} {ref} "
                                             f"thread(s){detail}")
            else:
                diff = [t for t in have[1:] if (self.runs[(cfg, t, b)] / STATE).read_bytes() != ref_state]
                if diff:
                    self.notes.append(f"{cfg} batch {b} (unsharded): training state at threads {diff} differs "
                                      f"from {ref} thread(s) (not promised)")

    def sample_identity(self, cfg, threads, samplers):
        """--n 8 --batch 8 (two shards) from one model: the same bytes at every thread count."""
        model = next((self.runs[(cfg, t, b)] for b in (16, 8) for t in THREADS if (cfg, t, b) in self.runs), None)
        if model is None:
            check(False, f"{cfg}: no trained model to check sharded sampling with (training failed)")
            return
        for s in samplers:
            ref = None
            for t in threads:
                so = self.out(cfg, "shardsample", s, "t", t)
                r = self.sample(f"{cfg}: sample --n 8 --batch 8 --sampler {s} at {t} thread(s) from {model.name}",
                                model, so, s, t, 8, 8, self.size[cfg])
                if r is None:
                    continue
                if ref is None:
                    ref = (t, r)
                else:
                    check(r == ref[1], f"{cfg}: sharded sampling (--n 8 --batch 8, {s}) at {t} threads "
                                       f"{'byte-identical to' if r == ref[1] else 'DIFFERS from'} {ref[0]} thread(s)")

    def small_sample_notes(self, cfg):
        for b in BATCHES:
            for s in SAMPLERS:
                have = [t for t in THREADS if (cfg, t, b, s) in self.small]
                if not sharded(b) or len(have) < 2:
                    continue  # unsharded models differ anyway; sampling --n 2 is unsharded (not asserted)
                diff = [t for t in have[1:] if self.small[(cfg, t, b, s)] != self.small[(cfg, have[0], b, s)]]
                if diff:
                    self.notes.append(f"{cfg} batch {b}, {s} --n 2 (unsharded sampling): threads {diff} differ "
                                      f"from {have[0]} thread(s) (not promised)")


def plan():
    """The cells in order: the required ones first, then the optional ones by priority."""
    cells = []
    if not SAN:
        for cfg in CONFIGS:
            for b in BATCHES:
                for t in THREADS:
                    cells.append(Cell(cfg, t, b, SAMPLERS, True, cfg == "unet_b" or FULL))
        return cells
    # Sanitizers: unet_b at every (threads, batch), one sampler per cell (each thread count and each batch
    # size meets every sampler), resume where it matters most; then fmnist-small, diagonal first.
    for bi, b in enumerate(BATCHES):
        for ti, t in enumerate(THREADS):
            s = SAMPLERS if t == 1 else (SAMPLERS[(ti + bi) % 3],)
            cells.append(Cell("unet_b", t, b, s, b == 16 or (b == 3 and t <= 2), True))
    order = [(1, 16), (8, 16), (2, 8), (3, 3), (8, 1), (2, 16), (3, 16), (1, 8), (8, 8), (3, 8),
             (1, 1), (2, 1), (3, 1), (1, 3), (2, 3), (8, 3)]
    for i, (t, b) in enumerate(order):
        s = SAMPLERS if i == 0 else (SAMPLERS[i % 3],)
        cells.append(Cell("fmnist-small", t, b, s, i < 2, FULL))
    return cells


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_stress_"))
    print(f"ddpm: {DDPM}; {'sanitizer build: thinner matrix, ' if SAN else ''}budget {BUDGET:.0f} s for the "
          f"optional part{' (off: DDPM_STRESS_FULL)' if FULL else ''}; {os.cpu_count()} CPU(s)", flush=True)
    st = Stress(tmp)
    cells = plan()
    for cell in cells:
        if not cell.required and elapsed() > BUDGET:
            st.skipped.append(cell)
            continue
        st.run_cell(cell)
    for cfg in CONFIGS:
        if not any(c.ran for c in cells if c.cfg == cfg):
            continue
        t0 = time.time()
        st.train_identity(cfg)
        if cfg == "unet_b" or not SAN:
            st.sample_identity(cfg, THREADS, SAMPLERS)
        elif elapsed() <= BUDGET or FULL:
            st.sample_identity(cfg, (1, 8), ("ddpm",))
        else:
            st.skipped.append(f"{cfg}: sharded sampling identity")
        st.small_sample_notes(cfg)
        st.cfg_time[cfg] += time.time() - t0

    # The matrix covered.
    print("\ncovered (t = trained, samplers d/i/m = ddpm/ddim/dpm++2m, r = resume; X: what failed; - = not run):")
    abbrev = {"train": "t", "ddpm": "d", "ddim": "i", "dpm++2m": "m"}
    for cfg in CONFIGS:
        print(f"  {cfg}  ({st.cfg_time[cfg]:.1f} s)")
        print("    batch " + "".join(f"{'threads ' + str(t):>20}" for t in THREADS))
        for b in BATCHES:
            row = []
            for t in THREADS:
                c = next((c for c in cells if (c.cfg, c.t, c.b) == (cfg, t, b)), None)
                if c is None or not c.ran:
                    row.append("-")
                    continue
                s = "".join(abbrev.get(d, "r") for d in c.done)
                row.append(s + (" X:" + ",".join(c.failed) if c.failed else ""))
            print(f"    {b:5d}{'*' if sharded(b) else ' '}" + "".join(f"{r:>20}" for r in row))
    print("    (* sharded batch: bit-identity across thread counts asserted)")
    for n in st.notes:
        print("info  " + n)
    if st.skipped:
        print(f"skipped for the time budget: {len(st.skipped)} item(s) "
              f"({', '.join(c if isinstance(c, str) else f'{c.cfg} t{c.t} b{c.b}' for c in st.skipped)})")
    print(f"time: {elapsed():.1f} s in all ({'sanitizer build' if SAN else 'normal build'})")
    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
