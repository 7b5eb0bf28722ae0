"""test_wheel.py -- the real install path, once and cheaply: `pip wheel ./python` (hatchling, no build
isolation: the pinned hatchling that scripts/install-deps.sh --test installs; the library under test
bundled through DDPM_WHEEL_LIBRARY rather than built again), the wheel's tag and contents, then
`pip install` of that wheel into a fresh venv whose Python imports and uses the bundled library."""
import os
import pathlib
import subprocess
import sys
import venv
import zipfile

import ddpm
from conftest import REPO


def test_wheel_builds_installs_and_runs(tmp_path, tiny_run):
    env = dict(os.environ, DDPM_WHEEL_LIBRARY=str(pathlib.Path(ddpm._lib.LIBRARY).resolve()), PIP_NO_INDEX="1",
               PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("DDPM_LIBRARY", None)
    env.pop("PYTHONPATH", None)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-w",
                        str(tmp_path / "dist"), str(REPO / "python")], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    wheels = list((tmp_path / "dist").glob("*.whl"))
    assert [w.name for w in wheels] == [f"ddpm-{ddpm.version}-py3-none-linux_x86_64.whl"]
    names = zipfile.ZipFile(wheels[0]).namelist()
    for f in ("ddpm/__init__.py", "ddpm/_lib.py", "ddpm/libddpm.so.0", "ddpm/ddpm.h"):
        assert f in names, names
    assert not any("tests/" in n for n in names)

    venv.create(tmp_path / "venv", system_site_packages=True, with_pip=True)  # numpy and cffi: the system's
    py = str(tmp_path / "venv" / "bin" / "python")
    r = subprocess.run([py, "-m", "pip", "install", "--no-deps", str(wheels[0])], env=env, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    code = ("import ddpm, sys; ddpm.set_threads(2); m = ddpm.Model.load(sys.argv[1]); "
            "x = m.sample(2, sampler='ddim', steps=3); print(ddpm.__file__, ddpm._lib.LIBRARY, x.shape)")
    r = subprocess.run([py, "-c", code, str(tiny_run)], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    where, library, shape = r.stdout.split(" ", 2)
    assert where.startswith(str(tmp_path / "venv")) and library == str(pathlib.Path(where).parent / "libddpm.so.0")
    assert shape.strip() == "(2, 1, 8, 8)"
