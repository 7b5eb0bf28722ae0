"""_lib.py -- the C library behind the package: cffi (ABI mode) declarations generated from ddpm.h at
import, the loaded libddpm.so, ddpm_status as exceptions, and how calls are made (one thread at a
time, the GIL released; long calls on a worker thread so that Ctrl-C cancels them).

Where things come from:
  the library: $DDPM_LIBRARY (a libddpm.so path), else libddpm.so.0 beside this file (the wheel's);
  the header:  ddpm.h beside this file (the wheel's), else include/ddpm.h of the repository this
               file sits in (python/src/ddpm/ -> ../../../include), e.g. when DDPM_LIBRARY points at
               a build folder.
"""
import os
import pathlib
import queue
import re
import threading

import cffi

HERE = pathlib.Path(__file__).resolve().parent


def _find_header():
    for p in (HERE / "ddpm.h", HERE.parents[2] / "include" / "ddpm.h"):
        if p.is_file():
            return p
    raise ImportError(f"ddpm: no ddpm.h beside {HERE} or in the repository above it")


def cdef_from_header(text):
    """The declarations of ddpm.h as cffi's cdef takes them: comments and preprocessor lines dropped
    (the __cplusplus and __GNUC__ blocks with their contents), integer #defines kept as constants,
    the DDPM_API attribute removed. Everything else (structs, enums, prototypes) is the header's text."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    out, skipping = [], 0
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("#"):
            if re.match(r"#\s*if(def)?\s+(__cplusplus|defined\(__GNUC__\))", s):
                skipping += 1
            elif skipping and re.match(r"#\s*endif", s):
                skipping -= 1
            else:
                m = re.match(r"#\s*define\s+(DDPM_\w+)\s+(-?\d+)\s*$", s)
                if m and not skipping:
                    out.append(f"#define {m.group(1)} {m.group(2)}")
            continue
        if not skipping:
            out.append(line)
    return re.sub(r"\bDDPM_API\s+", "", "\n".join(out))


HEADER = _find_header()
HEADER_TEXT = HEADER.read_text()
HEADER_VERSION = re.search(r'#define DDPM_VERSION "([^"]+)"', HEADER_TEXT).group(1)

ffi = cffi.FFI()
ffi.cdef(cdef_from_header(HEADER_TEXT))


def _find_library():
    env = os.environ.get("DDPM_LIBRARY")
    if env:
        return pathlib.Path(env)
    p = HERE / "libddpm.so.0"
    if p.is_file():
        return p
    raise ImportError(f"ddpm: no libddpm.so.0 in {HERE} (install with pip install ./python, "
                      "or point DDPM_LIBRARY at a built libddpm.so)")


LIBRARY = _find_library()
lib = ffi.dlopen(str(LIBRARY))
VERSION = ffi.string(lib.ddpm_version()).decode()
if VERSION != HEADER_VERSION:
    raise ImportError(f"ddpm: the library {LIBRARY} is version {VERSION}, the header {HEADER} {HEADER_VERSION}: "
                      "struct layouts may differ (rebuild the package)")


# ------------------------------------------------------------------ errors

class Error(Exception):
    """A ddpm_status other than DDPM_OK. .status is the code, .message ddpm's message
    (ddpm_errmsg), .status_name ddpm_status_name(status)."""
    status = None

    def __init__(self, message, status=None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status

    @property
    def status_name(self):
        return ffi.string(lib.ddpm_status_name(self.status if self.status is not None else -1)).decode()


class ArgumentError(Error, ValueError):
    """DDPM_ERR_ARG: an argument or option is invalid."""
    status = lib.DDPM_ERR_ARG


class InputError(Error):
    """DDPM_ERR_INPUT: an input file or folder is missing, unreadable, malformed or of the wrong shape."""
    status = lib.DDPM_ERR_INPUT


class OutOfMemoryError(Error, MemoryError):
    """DDPM_ERR_NOMEM: memory ran out."""
    status = lib.DDPM_ERR_NOMEM


class WriteError(Error, OSError):
    """DDPM_ERR_IO: an output could not be written."""
    status = lib.DDPM_ERR_IO


class NonFiniteError(Error, ArithmeticError):
    """DDPM_ERR_NONFINITE: a computation gave NaN or infinity."""
    status = lib.DDPM_ERR_NONFINITE


class CancelledError(Error):
    """DDPM_ERR_CANCELLED: a progress callback asked to stop."""
    status = lib.DDPM_ERR_CANCELLED


class BackendError(Error, RuntimeError):
    """DDPM_ERR_RUNTIME: any other failure while running (the CPU backend, MPI)."""
    status = lib.DDPM_ERR_RUNTIME


ERRORS = {c.status: c for c in (ArgumentError, InputError, OutOfMemoryError, WriteError, NonFiniteError,
                                CancelledError, BackendError)}


def error(status, handle=ffi.NULL):
    """The exception of status, with the message of the last failure on handle (NULL: of the calling
    thread): call it on the thread that made the failing call, before the next call."""
    msg = ffi.string(lib.ddpm_errmsg(handle)).decode(errors="replace")
    cls = ERRORS.get(status, Error)
    e = cls(msg or ffi.string(lib.ddpm_status_name(status)).decode(), status)
    return e


# ------------------------------------------------------------------ calls

# The library is not reentrant: every call into it holds this lock (threading.Lock releases the GIL
# while waiting). cffi releases the GIL during every C call, so other Python threads run meanwhile.
LOCK = threading.RLock()


def check(status, handle=ffi.NULL):
    if status != 0:
        raise error(status, handle)


def call(fn, *args, handle=ffi.NULL):
    """fn(*args) under the lock on this thread; a non-zero status raises its exception."""
    with LOCK:
        st = fn(*args)
        if st != 0:
            raise error(st, handle)


class Handle:
    """A Python object that owns a C one (self._h): close() frees it once (_free names the
    ddpm_*_free function), a with-block closes it, the garbage collector closes what was left
    open, and a call on a closed object raises ValueError ("ddpm.<Class>: the <_what> is closed")."""
    _h = None
    _free = None
    _what = None

    def close(self):
        """Frees the C object; further calls raise ValueError. Closing twice is fine."""
        h, self._h = self._h, None
        if h is not None:
            with LOCK:
                getattr(lib, self._free)(h)

    def __del__(self):
        if self._h is not None and lib is not None:  # lib is None at interpreter exit
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def closed(self):
        return self._h is None

    def _handle(self):
        if self._h is None:
            raise ValueError(f"ddpm.{type(self).__name__}: the {self._what} is closed")
        return self._h


class _Worker:
    """One daemon thread that makes the long calls (sampling, likelihood, statistics), so that the
    calling thread waits interruptibly: Ctrl-C there sets the call's cancel flag, which the progress
    callback (on the worker) turns into DDPM_ERR_CANCELLED at the library's next progress report.
    Always the same thread: the library and its OpenMP pool see one caller, not one per call."""

    def __init__(self):
        self.jobs = queue.SimpleQueue()
        self.thread = None

    def submit(self, fn, box, done):
        """Queues fn; the worker appends (True, result) or (False, exception) to box, then sets done."""
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="ddpm-worker", daemon=True)
            self.thread.start()
        self.jobs.put((fn, box, done))

    def _loop(self):
        while True:
            fn, box, done = self.jobs.get()
            try:
                box.append((True, fn()))
            except BaseException as e:  # handed to the caller
                box.append((False, e))
            done.set()


WORKER = _Worker()


class _Progress:
    """The state of one long call: the user's callback, the cancel flag, an exception it raised,
    whether the worker has taken the call up."""

    def __init__(self, fn):
        self.fn, self.cancel, self.exc, self.ran = fn, False, None, False


@ffi.callback("ddpm_progress_fn")
def _on_progress(ctx, done, total):
    p = ffi.from_handle(ctx)
    if p.cancel:
        return 1
    if p.fn is not None:
        try:
            if p.fn(int(done), int(total)):
                return 1
        except BaseException as e:  # noqa: B902 -- raised again on the calling thread
            p.exc = e
            return 1
    return 0


PROGRESS = _on_progress


def long_call(fn, progress=None, handle=ffi.NULL):
    """Runs fn(PROGRESS, ctx) -> status on the worker thread, with the lock held, while this thread
    waits. progress(done, total) is called on the worker; a true result cancels (CancelledError), an
    exception it raises cancels and is raised here. Ctrl-C (KeyboardInterrupt) here cancels the call,
    waits until the library has stopped, and is raised again: the library is usable afterwards."""
    state = _Progress(progress)
    ctx = ffi.new_handle(state)
    done, box = threading.Event(), []

    def job():
        # The worker alone runs this, so ran needs no lock. A second copy (queued after a Ctrl-C that
        # may have come before the first was) does nothing; a first one after Ctrl-C never starts.
        if state.ran:
            return None
        state.ran = True
        if state.cancel:
            return lib.DDPM_ERR_CANCELLED, None
        st = fn(PROGRESS, ctx)
        return st, (error(st, handle) if st != 0 else None)

    def wait():
        while not done.wait(0.25):  # a timeout: woken even when SIGINT went to another thread
            pass

    with LOCK:
        try:
            WORKER.submit(job, box, done)
            wait()
        except KeyboardInterrupt as e:
            # Anywhere from before the submit to after the wait: cancel, make sure a copy is queued,
            # and wait until the library has stopped (more Ctrl-Cs meanwhile are that same one).
            state.cancel = True
            while True:
                try:
                    WORKER.submit(job, box, done)
                    wait()
                    break
                except KeyboardInterrupt:
                    pass
            raise e
        ok, value = box[0]
        if state.exc is not None:
            raise state.exc
        if not ok:
            raise value
        st, exc = value
        if exc is not None:
            raise exc
        return st


for _cls in (Error, *ERRORS.values()):
    _cls.__module__ = "ddpm"  # shown as ddpm.InputError, where users catch it
