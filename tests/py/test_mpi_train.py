#!/usr/bin/python3
"""test_mpi_train.py -- `mpirun -np N ddpm train` is one run: the same bits as one process.

With Open MPI's mpirun (Debian's openmpi-bin; --oversubscribe, as CI has two cores):
  * identity: the training state after 3 steps (weights, EMA, Adam moments) is byte-identical
    for one process with 1 and 2 threads and for np = 2 and 4, with dropout and flips on, and
    so are the logged losses and gradient norms, and TensorBoard's view of RUN/tb (one event file,
    rank 0's: the global loss, gradient norm and loss by timestep quartile);
  * resume across np: a run started with np = 4 resumes with one process, one started with one
    process resumes with np = 2, and both end byte-identical to the uninterrupted run;
  * a process count or batch that cannot be split fails with a message and a non-zero status,
    and so does a command that does not run over MPI (info);
  * a dead rank: SIGKILL to rank 1 stops the job within a bound with a message naming rank 1;
    the last checkpoint is intact and --resume continues exactly;
  * SIGTERM to mpirun: the ranks finish the step, save once, and the run continues exactly.

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_mpi_train.py
Exits non-zero on any failure; says SKIP and exits 77 (scripts/run-tests.sh counts it as skipped,
or as failed under DDPM_NO_SKIP=1) when mpirun is not installed.
"""
import logging
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from ddpmtest import CONFIG, DDPM, check, finish, metrics, saved_step, tiny_idx  # noqa: E402

logging.getLogger("tensorboard").setLevel(logging.ERROR)
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402

SKIPPED = 77  # the exit status of a skip (automake's convention; scripts/run-tests.sh)

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1", ASAN_OPTIONS="detect_leaks=0:" + os.environ.get("ASAN_OPTIONS", ""),
           OMP_WAIT_POLICY="passive")


def train_cmd(np_, out, *args, threads=1):
    cmd = [DDPM, "train", "--out", str(out), "--threads", str(threads), *args]
    return (["mpirun", "-np", str(np_)] + cmd) if np_ > 1 else cmd


def run(np_, out, *args, threads=1, timeout=300):
    p = subprocess.run(train_cmd(np_, out, *args, threads=threads), env=ENV, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def state(run_dir):
    return pathlib.Path(run_dir, "training_state.safetensors").read_bytes()


def last_logged_step(run_dir):
    try:
        return max((s for s, _, _ in metrics(run_dir)), default=0)
    except (OSError, ValueError, KeyError):
        return 0  # not written yet, or a line being written


def rank_pid(run_dir, rank):
    """The pid of the ddpm process of `rank` training into run_dir."""
    for d in pathlib.Path("/proc").iterdir():
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            env = (d / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):
            continue
        if cmd and cmd[0] == DDPM.encode() and str(run_dir).encode() in cmd and \
                f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            return int(d.name)
    return None


def start_and_wait(np_, out, args, min_step):
    p = subprocess.Popen(train_cmd(np_, out, *args), env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True)
    t0 = time.time()
    while last_logged_step(out) < min_step and p.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    return p


def tb_view(run_dir):
    """The event files of RUN/tb, and {tag: [(step, value)]} of the tags that do not depend on timing."""
    tb = pathlib.Path(run_dir, "tb")
    files = sorted(f.name for f in tb.iterdir()) if tb.is_dir() else []
    acc = event_accumulator.EventAccumulator(str(tb), size_guidance={event_accumulator.SCALARS: 0}).Reload()
    tags = [t for t in acc.Tags()["scalars"] if t not in ("train/img_per_s", "train/reduce_s")]
    return files, {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in tags}


def main():
    if not shutil.which("mpirun"):
        print("SKIP: mpirun not found (the test command installs openmpi-bin)")
        return SKIPPED
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="ddpm_mpi_train_"))
    # 40 images of 8x8 noise as an IDX file.
    data = tiny_idx(tmp / "images-idx3-ubyte", 40)
    base = ["--config", CONFIG, "--data", str(data), "--batch", "16", "--dropout", "0.1", "--flip",
            "--log-every", "1", "--save-every", "1000"]

    # Identity across threads and processes.
    ref = tmp / "ref"
    rc, log = run(1, ref, *base, "--steps", "3")
    check(rc == 0, f"one process trains (rc {rc})" + ("" if rc == 0 else "\n" + log))
    for np_, threads in ((1, 2), (2, 1), (4, 1)):
        out = tmp / f"np{np_}t{threads}"
        rc, log = run(np_, out, *base, "--steps", "3", threads=threads)
        check(rc == 0, f"np {np_} x {threads} thread(s) trains (rc {rc})" + ("" if rc == 0 else "\n" + log))
        if rc == 0:
            check(state(out) == state(ref), f"np {np_} x {threads} thread(s): training state byte-identical")
            check(metrics(out) == metrics(ref), f"np {np_} x {threads} thread(s): the same global loss and grad norm")
            files, view = tb_view(out)
            check(len(files) == 1 and view == tb_view(ref)[1] and "train/loss_q3" in view,
                  f"np {np_} x {threads} thread(s): one event file, TensorBoard shows the one-process run's values "
                  f"({', '.join(sorted(view))})")
    if np_ == 4 and rc == 0:
        check("4 processes x 4 images of batch 16" in log, "the run says how the batch is split")

    # Resume across process counts.
    out = tmp / "resume41"
    run(4, out, *base, "--steps", "2")
    rc, log = run(1, out, "--resume", "--steps", "3")
    check(rc == 0 and state(out) == state(ref), f"np 4 -> resumed with 1 process: byte-identical (rc {rc})")
    out = tmp / "resume12"
    run(1, out, *base, "--steps", "1")
    rc, log = run(2, out, "--resume", "--steps", "3")
    check(rc == 0 and state(out) == state(ref), f"1 process -> resumed with np 2: byte-identical (rc {rc})")

    # Splits that cannot be done.
    rc, log = run(3, tmp / "np3", *base, "--steps", "1")
    check(rc != 0 and "power of two" in log, f"np 3 is refused (rc {rc}): {log.strip().splitlines()[0] if log else ''}")
    rc, log = run(2, tmp / "odd", *base, "--steps", "1", "--batch", "15")
    check(rc != 0 and "does not split evenly over 2 processes" in log, f"batch 15 over np 2 is refused (rc {rc})")
    rc, log = run(2, tmp / "shards", *base, "--steps", "1", "--shards", "1")
    check(rc != 0 and "cannot share" in log, f"1 shard over np 2 is refused (rc {rc})")

    p = subprocess.run(["mpirun", "-np", "2", DDPM, "info", "--model", "tests/fixtures/unet_b"], env=ENV,
                       capture_output=True, text=True, timeout=120)
    check(p.returncode != 0 and "run it as one process" in p.stdout + p.stderr,
          f"a command that does not split over processes refuses mpirun (rc {p.returncode})")

    long_run = [*base, "--steps", "1000000", "--save-every", "7", "--log-every", "1"]

    # A dead rank.
    out = tmp / "killed"
    p = start_and_wait(2, out, long_run, 20)
    pid = rank_pid(out, 1)
    check(pid is not None, "found rank 1's process")
    if pid:
        t0 = time.time()
        os.kill(pid, signal.SIGKILL)
        try:
            log, _ = p.communicate(timeout=60)
            took = time.time() - t0
            check(p.returncode != 0 and took < 30, f"the job stops after rank 1 is killed (rc {p.returncode}, {took:.1f} s)")
            check("rank 1" in log, "the message names rank 1")
        except subprocess.TimeoutExpired:
            p.kill()
            check(False, "the job hangs after rank 1 is killed")
        k = saved_step(pathlib.Path(out, "training_state.safetensors"))
        rc, log = run(2, out, "--resume", "--steps", str(k + 4))
        ref2 = tmp / "ref_killed"
        run(1, ref2, *base, "--save-every", "7", "--steps", str(k + 4))  # the run's cadence is in its state
        check(rc == 0 and state(out) == state(ref2),
              f"after the kill the checkpoint (step {k}) resumes to step {k + 4} exactly (rc {rc})")
    else:
        p.kill()

    # SIGTERM to mpirun: save once, exit, continue exactly.
    out = tmp / "term"
    p = start_and_wait(2, out, long_run, 20)
    t0 = time.time()
    p.send_signal(signal.SIGTERM)
    try:
        log, _ = p.communicate(timeout=60)
        took = time.time() - t0
        check(p.returncode != 0 and took < 30, f"mpirun stops on SIGTERM (rc {p.returncode}, {took:.1f} s)")
        check(log.count("interrupted, saved at step") == 1, "the ranks finish the step and save once")
        k = saved_step(pathlib.Path(out, "training_state.safetensors"))
        check(f"interrupted, saved at step {k}" in log, f"the saved state is the step it reports ({k})")
        rc, log = run(2, out, "--resume", "--steps", str(k + 3))
        ref3 = tmp / "ref_term"
        run(1, ref3, *base, "--save-every", "7", "--steps", str(k + 3))
        check(rc == 0 and state(out) == state(ref3), f"SIGTERM at step {k}, resumed to {k + 3}: byte-identical")
    except subprocess.TimeoutExpired:
        p.kill()
        check(False, "mpirun hangs after SIGTERM")

    return finish(tmp)


if __name__ == "__main__":
    sys.exit(main())
