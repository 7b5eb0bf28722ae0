"""test_api.py -- the module's own functions: the version, the declarations generated from ddpm.h,
ddpm_status as exceptions, settings, the log, PNG files."""
import os
import re

import numpy as np
import pytest

import ddpm
from ddpm import _lib
from conftest import REPO


def test_version_is_the_headers():
    want = re.search(r'#define DDPM_VERSION "([^"]+)"', (REPO / "include" / "ddpm.h").read_text()).group(1)
    assert ddpm.version == ddpm.__version__ == want


def test_declarations_cover_every_public_function():
    header = (REPO / "include" / "ddpm.h").read_text()
    names = set(re.findall(r"DDPM_API\s+[^;]*?\b(ddpm_\w+)\s*\(", header))
    assert len(names) > 60
    for name in names:
        assert callable(getattr(_lib.lib, name)), name
    # struct layouts come from the header: a field the header adds appears without editing the package
    assert [f for f, _ in _lib.ffi.typeof("ddpm_sample_options").fields][:3] == ["sampler", "steps", "eta"]
    assert _lib.lib.DDPM_NPY_MAX_DIMS == 8 and _lib.lib.DDPM_ERR_RUNTIME == 7


def test_cdef_drops_preprocessor_blocks():
    text = '#ifdef __cplusplus\nextern "C" {\n#endif\n#define DDPM_X 3\n#define DDPM_S "s"\n' \
           'DDPM_API int ddpm_f(void); /* c */\n#ifdef __cplusplus\n}\n#endif\n'
    out = _lib.cdef_from_header(text)
    assert "extern" not in out and "DDPM_API" not in out and '"s"' not in out
    assert "#define DDPM_X 3" in out and "int ddpm_f(void);" in out


@pytest.mark.parametrize("status,cls,base", [
    (1, ddpm.ArgumentError, ValueError), (2, ddpm.InputError, ddpm.Error), (3, ddpm.OutOfMemoryError, MemoryError),
    (4, ddpm.WriteError, OSError), (5, ddpm.NonFiniteError, ArithmeticError), (6, ddpm.CancelledError, ddpm.Error),
    (7, ddpm.BackendError, RuntimeError)])
def test_a_subclass_per_status(status, cls, base):
    e = _lib.error(status)
    assert type(e) is cls and isinstance(e, ddpm.Error) and isinstance(e, base)
    assert e.status == status and e.status_name == _lib.ffi.string(_lib.lib.ddpm_status_name(status)).decode()


def test_error_carries_ddpms_message(tmp_path):
    with pytest.raises(ddpm.InputError) as e:
        ddpm.Model.load(tmp_path / "no-such-model")
    assert "no-such-model" in str(e.value) and e.value.message == str(e.value) and e.value.status == 2


def test_set_threads_and_verify():
    assert ddpm.set_threads(1) == 1
    assert ddpm.set_threads(2) == 2
    ddpm.set_verify(False)
    ddpm.set_verify(True)


def test_set_conv_algorithm():
    ddpm.set_conv_algorithm("direct")
    ddpm.set_conv_algorithm("measure")
    with pytest.raises(ddpm.ArgumentError, match="fastest"):
        ddpm.set_conv_algorithm("fastest")


def test_cpu_level_follows_the_onednn_cap():
    assert ddpm.cpu_level() in ("x86-64", "avx2", "avx512")
    # In a fresh process (the level is chosen when the library loads), capped at SSE4.1: the baseline.
    import subprocess
    import sys
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="SSE41")
    out = subprocess.run([sys.executable, "-c", "import ddpm; print(ddpm.cpu_level())"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "x86-64", out.stderr


def test_set_log_receives_the_librarys_notes(tiny_run, tmp_path):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (run / "training_state.safetensors").write_bytes(b"corrupt")
    notes = []
    ddpm.set_log(lambda level, msg: notes.append((level, msg)))
    try:
        t = ddpm.Trainer.resume(run)
        t.close()
    finally:
        ddpm.set_log(None)
    assert any(level == "warn" for level, _ in notes) and any("previous" in m for _, m in notes), notes


def test_save_grid_and_read_png(tmp_path):
    x = np.linspace(-1, 1, 4 * 3 * 5 * 6, dtype=np.float32).reshape(4, 3, 5, 6)
    ddpm.save_grid(tmp_path / "g.png", x, cols=4, gap=0)
    g = ddpm.read_png(tmp_path / "g.png")
    assert g.shape == (3, 5, 24) and g.dtype == np.float32
    want = np.floor((x[1] + 1) * 127.5 + 0.5) / 127.5 - 1
    assert np.allclose(g[:, :, 6:12], want, atol=1e-6)
    with pytest.raises(ddpm.InputError):
        ddpm.read_png(tmp_path / "missing.png")
    with pytest.raises(ddpm.WriteError):
        ddpm.save_grid(tmp_path / "no" / "such" / "dir" / "g.png", x)
