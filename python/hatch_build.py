"""hatch_build.py -- the wheel's build hook (hatchling): builds libddpm.so with the project's Makefile
(`make libs` in the repository root, python/..) and puts it in the package as ddpm/libddpm.so.0, with
include/ddpm.h as ddpm/ddpm.h (the package reads its C declarations from it). The wheel is tagged
py3-none-linux_x86_64: the package is pure Python over ctypes-style calls (cffi in ABI mode), so one
wheel serves every Python 3 on any x86-64 CPU (the library's hot loops choose their AVX2 or AVX-512
copy at run time); it links the system's oneDNN, OpenBLAS, cJSON, libpng and xxHash, which are not
bundled.

Environment:
  DDPM_WHEEL_BUILD=DIR     the Makefile's build folder (default: build, the Makefile's own)
  DDPM_WHEEL_LIBRARY=FILE  bundle this already built libddpm.so instead of running make
  DDPM_WHEEL_MAKEFLAGS     extra make arguments (default: -jN with N the CPU count), e.g. "ARCH=-march=native"
"""
import os
import pathlib
import re
import shlex
import subprocess

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class LibddpmBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version, build_data):
        if self.target_name != "wheel":
            raise RuntimeError("ddpm builds wheels only: pip install ./python from a checkout of the repository")
        root = pathlib.Path(self.root).resolve().parent
        header = root / "include" / "ddpm.h"
        if not header.is_file():
            raise RuntimeError(f"{header} is missing: build the package from the repository (pip install ./python)")
        so_version = re.search(r'#define DDPM_VERSION "([^"]+)"', header.read_text()).group(1)
        library = os.environ.get("DDPM_WHEEL_LIBRARY")
        if library:
            library = pathlib.Path(library).resolve()
        else:
            build = os.environ.get("DDPM_WHEEL_BUILD", "build")
            flags = shlex.split(os.environ.get("DDPM_WHEEL_MAKEFLAGS", f"-j{os.cpu_count() or 1}"))
            subprocess.run(["make", "-C", str(root), "--no-print-directory", f"BUILD={build}", *flags, "libs"],
                           check=True)
            library = (root / build / f"libddpm.so.{so_version}").resolve()
        if not library.is_file():
            raise RuntimeError(f"no library at {library}")
        build_data["force_include"][str(library)] = "ddpm/libddpm.so.0"
        build_data["force_include"][str(header)] = "ddpm/ddpm.h"
        build_data["pure_python"] = False
        build_data["tag"] = "py3-none-linux_x86_64"
