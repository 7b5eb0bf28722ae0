#!/usr/bin/python3
"""test_python_pkg.py -- runs the ddpm Python package's pytest suite (python/tests) against this build:
the package from python/src (PYTHONPATH) on DDPM_BUILD's libddpm.so.0 (DDPM_LIBRARY), the `ddpm` CLI of
DDPM_BUILD for the bit-for-bit comparisons, and one real wheel build and venv install (test_wheel.py).

A library built with SAN=1 needs the sanitizer runtimes loaded first: pytest then runs with them in
LD_PRELOAD (LeakSanitizer off: Python's own allocations are not ours to check), in two parts: every
test but the RSS one as it is, then test_memory.py with ASan's quarantine off and no allocation stacks
recorded -- ASan keeps every freed block for a while and every distinct allocation stack for good, which
grows the resident memory by itself (about 1 KiB a cycle; 0 bytes without ASan, 12 KiB in all with
these options).

    DDPM_BUILD=build /usr/bin/python3 tests/py/test_python_pkg.py [pytest arguments]
Exits with pytest's status (non-zero on any failure).
"""
import os
import pathlib
import subprocess
import sys

BUILD = pathlib.Path(os.environ.get("DDPM_BUILD", "build")).resolve()
LIBRARY = BUILD / "libddpm.so.0"


def sanitizer_env():
    """LD_PRELOAD and ASAN_OPTIONS for a SAN=1 library, {} otherwise."""
    needed = subprocess.run(["readelf", "-d", str(LIBRARY)], capture_output=True, text=True).stdout
    runtimes = [subprocess.run(["gcc", f"-print-file-name={r}.so"], capture_output=True, text=True).stdout.strip()
                for r in ("libasan", "libubsan") if r + ".so" in needed]
    if not runtimes:
        return {}
    return {"LD_PRELOAD": " ".join(runtimes), "ASAN_OPTIONS": "detect_leaks=0"}


def main():
    if not LIBRARY.exists():
        print(f"no {LIBRARY}: build first (make test-build)")
        return 1
    san = sanitizer_env()
    env = dict(os.environ, DDPM_BUILD=str(BUILD), DDPM_LIBRARY=str(LIBRARY), PYTHONDONTWRITEBYTECODE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(pathlib.Path("python/src").resolve()),
                                                        os.environ.get("PYTHONPATH")])), **san)
    pytest = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-ra", "--durations=5"]
    if not san:
        return subprocess.run([*pytest, "python/tests", *sys.argv[1:]], env=env).returncode
    rc = subprocess.run([*pytest, "python/tests", "--deselect", "python/tests/test_memory.py", *sys.argv[1:]],
                        env=env).returncode
    env["ASAN_OPTIONS"] = "detect_leaks=0:quarantine_size_mb=0:malloc_context_size=0"
    return rc or subprocess.run([*pytest, "python/tests/test_memory.py", *sys.argv[1:]], env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
