#!/usr/bin/env bash
# test_install.sh -- `make install` into a temporary prefix from the build $DDPM_BUILD (already built:
# install must not rebuild it), then as a program outside would: build examples/sample.c and
# examples/train.c with `pkg-config --cflags --libs ddpm` (and sample once more statically, with
# `pkg-config --static`), train a tiny model for a few steps (the tiny fixture config, 8x8 gray
# images from an IDX file written here), sample a 4x4 grid from it and check the PNG's size, run the
# installed ddpm (also on CPUs emulated by qemu-x86_64: one without AVX, one with AVX2) and read
# its man page; then `make uninstall` must leave nothing of ours, and the
# same for an install into DESTDIR. scripts/run-tests.sh runs it with DDPM_BUILD set.
set -u
B=${DDPM_BUILD:-build}
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
major=$(sed -n 's/^#define DDPM_VERSION_MAJOR \([0-9][0-9]*\).*/\1/p' include/ddpm.h)
version=$(sed -n 's/^#define DDPM_VERSION "\(.*\)"/\1/p' include/ddpm.h)

# The build's own settings (a sanitizer build stays one), and no make state from a caller (make test).
san=0
grep -q fsanitize "$B/cflags.txt" 2>/dev/null && san=1
sanflags=""
[ "$san" -eq 1 ] && sanflags="-fsanitize=address,undefined"
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL timeout 600 make --no-print-directory BUILD="$B" SAN=$san "$@"; }

# The files an install writes, relative to the prefix (the .so links are symlinks).
expected="bin/ddpm
include/ddpm.h
lib/libddpm.a
lib/libddpm.so
lib/libddpm.so.$major
lib/libddpm.so.$version
lib/pkgconfig/ddpm.pc
share/man/man1/ddpm.1"
installed() { [ -d "$1" ] && (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\./||' | sort); }

# ---- install into the prefix
if mk install PREFIX="$prefix" > "$tmp/install.log" 2>&1; then
    ok "make install PREFIX=$prefix"
else
    bad "make install PREFIX=$prefix:"; tail -30 "$tmp/install.log"
fi
# Not from scratch: compiling every library source again means install did not use the build.
nsrc=$(ls src/*/*.c | wc -l)
nbuilt=$(grep -c -- ' -c src/' "$tmp/install.log")
[ "$nbuilt" -lt "$nsrc" ] && ok "make install used the build ($nbuilt of $nsrc library sources recompiled)" ||
    bad "make install rebuilt the library from scratch ($nbuilt sources)"
got=$(installed "$prefix")
[ "$got" = "$expected" ] && ok "the installed files: $(echo $got)" || bad "installed files: $(echo $got); expected $(echo $expected)"
[ "$(readlink "$prefix/lib/libddpm.so")" = "libddpm.so.$major" ] &&
    [ "$(readlink "$prefix/lib/libddpm.so.$major")" = "libddpm.so.$version" ] &&
    ok "libddpm.so -> libddpm.so.$major -> libddpm.so.$version" || bad "the library's symlinks"

# ---- pkg-config and the examples, built against the prefix only
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
flags=$(pkg-config --cflags --libs ddpm) && [ "$(pkg-config --modversion ddpm)" = "$version" ] &&
    ok "pkg-config --cflags --libs ddpm: $flags" || bad "pkg-config ddpm ($flags)"
cc_ex() { # NAME OUT LIBS...: builds examples/NAME.c
    local name=$1 out=$2; shift 2
    cc -std=c11 -Wall -Wextra -Werror -Wno-unused-parameter $sanflags "examples/$name.c" -o "$out" \
        $(pkg-config --cflags ddpm) "$@" 2> "$tmp/cc.log" && return 0
    cat "$tmp/cc.log"; return 1
}
for ex in sample train; do
    cc_ex $ex "$tmp/$ex" $(pkg-config --libs ddpm) -Wl,-rpath,"$prefix/lib" &&
        ok "examples/$ex.c builds with pkg-config" || bad "examples/$ex.c does not build with pkg-config"
done
ldd "$tmp/sample" 2>/dev/null | grep -q "libddpm.so.$major => $prefix/lib/" &&
    ok "examples/sample runs on $prefix/lib/libddpm.so.$major" || bad "examples/sample does not load the installed library"
cc_ex sample "$tmp/sample_static" $(pkg-config --static --libs ddpm | sed 's/-lddpm\b/-l:libddpm.a/') &&
    ! ldd "$tmp/sample_static" | grep -q libddpm &&
    ok "examples/sample.c links statically with pkg-config --static" || bad "examples/sample.c with libddpm.a"

# ---- train a tiny model, sample from it
/usr/bin/python3 - "$tmp/images-idx3-ubyte" <<'EOF'
import struct, sys
n = 64  # 8x8 gray images of fixed pseudo-random pixels, as tests/py/ddpmtest.py's tiny_idx
open(sys.argv[1], "wb").write(bytes([0, 0, 8, 3]) + struct.pack(">III", n, 8, 8)
                              + bytes((i * 7919 + 13) % 256 for i in range(n * 64)))
EOF
run=$tmp/run
if timeout 120 "$tmp/train" "$run" 6 tests/fixtures/unet_b/config.json "$tmp/images-idx3-ubyte" > "$tmp/train.log" 2>&1 &&
    grep -q '^step 6 ' "$tmp/train.log" && [ -f "$run/model/diffusion_pytorch_model.safetensors" ]; then
    ok "examples/train trains the tiny model 6 steps: $(grep '^step 6 ' "$tmp/train.log")"
else
    bad "examples/train:"; cat "$tmp/train.log"
fi
# Continued to 8 steps.
timeout 120 "$tmp/train" "$run" 8 > "$tmp/train2.log" 2>&1 && grep -q 'step 6 of 8' "$tmp/train2.log" &&
    grep -q '^step 8 ' "$tmp/train2.log" && ok "examples/train continues the run to step 8" ||
    { bad "examples/train resuming:"; cat "$tmp/train2.log"; }
# The PNG's width and height from its IHDR.
png_size() { /usr/bin/python3 -c 'import struct, sys
d = open(sys.argv[1], "rb").read(24)
print("%dx%d" % struct.unpack(">II", d[16:24]) if d[:8] == b"\x89PNG\r\n\x1a\n" and d[12:16] == b"IHDR" else "not-a-png")' "$1" 2>/dev/null; }
for ex in sample sample_static; do
    rm -f "$tmp/grid.png"
    if timeout 120 "$tmp/$ex" "$run/model" "$tmp/grid.png" 5 > "$tmp/sample.log" 2>&1; then
        # 4 x 4 images of 8 x 8 with 2-pixel gaps.
        s=$(png_size "$tmp/grid.png")
        [ "$s" = "38x38" ] && ok "examples/$ex writes a 4x4 grid of 8x8 images ($s PNG)" || bad "examples/$ex: the grid is $s, expected 38x38"
    else
        bad "examples/$ex:"; cat "$tmp/sample.log"
    fi
done
# Failures are statuses with a message, not crashes.
out=$(timeout 60 "$tmp/sample" "$tmp/no-such-model" "$tmp/x.png" 2>&1)
rc=$?
[ "$rc" -eq 1 ] && [ -n "$out" ] && [ ! -e "$tmp/x.png" ] && ok "examples/sample on a missing model: status 1, '$out'" ||
    bad "examples/sample on a missing model: status $rc, '$out'"

# ---- the installed ddpm and its man page
out=$(timeout 60 "$prefix/bin/ddpm" --help 2>&1) && grep -q '^usage: ddpm' <<< "$out" && ok "the installed ddpm --help" ||
    bad "the installed ddpm --help: $out"
if ldd "$prefix/bin/ddpm" | grep -q libddpm; then
    ldd "$prefix/bin/ddpm" | grep -q "libddpm.so.$major => $prefix/bin/../lib/\|libddpm.so.$major => $prefix/lib/" &&
        ok "the installed ddpm runs on the installed library" || bad "the installed ddpm loads another libddpm: $(ldd "$prefix/bin/ddpm" | grep libddpm)"
fi
out=$(timeout 60 "$prefix/bin/ddpm" info --model "$run" 2>&1) && ok "the installed ddpm info on the example's run" ||
    bad "the installed ddpm info --model RUN: $out"
# ---- the installed ddpm on other x86-64 CPUs (src/core/cpu.h), emulated by qemu-x86_64: on a
# Nehalem (SSE4.2, no AVX) it trains the tiny model and samples from it with the x86-64 kernels,
# on a Haswell (AVX2) with the avx2 ones. (Control: a program built with -mavx2 dies of SIGILL on
# the emulated Nehalem, so the emulation enforces the CPU.) Not in a sanitizer build: qemu-user
# cannot host ASan's shadow memory (the plain pass of CI runs this).
if [ "$san" -eq 1 ]; then
    ok "(a sanitizer build: the emulated CPUs are checked by the plain build's pass)"
elif ! command -v qemu-x86_64 > /dev/null; then
    bad "qemu-x86_64 is missing (scripts/install-deps.sh --test installs qemu-user)"
else
    printf '#include <immintrin.h>\nint main(int c, char **v) { (void)v; __m256 a = _mm256_set1_ps((float)c);\n
    return (int)_mm256_cvtss_f32(_mm256_add_ps(a, a)); }\n' > "$tmp/avx2.c"
    cc -O1 -mavx2 "$tmp/avx2.c" -o "$tmp/avx2" && "$tmp/avx2"
    rc=$?
    qrc=$( (timeout 60 qemu-x86_64 -cpu Nehalem "$tmp/avx2" 2> /dev/null) 2> /dev/null; echo $?) # bash's own note too
    [ "$rc" -eq 2 ] && [ "$qrc" -eq 132 ] && ok "control: an AVX2 program runs here and dies of SIGILL on the emulated Nehalem" ||
        bad "control: the AVX2 program: status $rc here, $qrc on the emulated Nehalem (want 2 and 132)"
    for cpu in Nehalem:x86-64 Haswell:avx2; do
        model=${cpu%%:*} level=${cpu#*:} qrun=$tmp/qemu-$model
        q() { XDG_CACHE_HOME=$tmp/cache-$model timeout 300 qemu-x86_64 -cpu "$model" "$prefix/bin/ddpm" "$@" 2>&1 |
              grep -v "TCG doesn't support"; }
        out=$(q train --data "$tmp/images-idx3-ubyte" --config tests/fixtures/unet_b/config.json --steps 2 --batch 4 \
              --threads 2 --no-tensorboard --out "$qrun")
        if grep -q "($level kernels)" <<< "$out" && grep -q "done at step 2" <<< "$out"; then
            out=$(q sample --model "$qrun/model" --n 4 --steps 5 --out "$qrun/s")
            s=$(png_size "$qrun/s/grid.png")
            [ "$s" = "18x18" ] && ok "on an emulated $model the installed ddpm trains ($level kernels) and samples a $s grid (2x2 images)" ||
                bad "ddpm sample on an emulated $model: grid $s: $out"
        else
            bad "ddpm train on an emulated $model (want $level kernels): $out"
        fi
    done
fi
man1=$prefix/share/man/man1/ddpm.1
if grep -q '^\.TH DDPM 1' "$man1" && grep -q '^\.SH COMMANDS' "$man1" && grep -q '^\.SS ddpm sample$' "$man1" &&
    grep -q '^\.SS ddpm eval nll$' "$man1" && grep -q '^\.SS ddpm figure interpolate$' "$man1"; then
    ok "ddpm.1 is roff with every command ($(grep -c '^\.SS' "$man1") sections)"
else
    bad "ddpm.1 lacks its title or command sections"
fi
if command -v man > /dev/null; then
    page=$(MANWIDTH=100 man -l "$man1" 2> "$tmp/man.err")
    grep -q 'ddpm eval fid' <<< "$page" && [ ! -s "$tmp/man.err" ] && ok "man -l ddpm.1 renders ($(wc -l <<< "$page") lines)" ||
        bad "man -l ddpm.1: $(head -5 "$tmp/man.err")"
fi

# ---- uninstall leaves nothing of ours
mk uninstall PREFIX="$prefix" > "$tmp/uninstall.log" 2>&1 && left=$(installed "$prefix") && [ -z "$left" ] &&
    ok "make uninstall PREFIX=$prefix removes every file" || bad "make uninstall left: $(echo $left) $(tail -5 "$tmp/uninstall.log")"

# ---- the same into DESTDIR (a package's staging folder): the paths inside say PREFIX
dest=$tmp/dest
mk install PREFIX=/opt/ddpm DESTDIR="$dest" > "$tmp/install2.log" 2>&1 &&
    [ "$(installed "$dest/opt/ddpm")" = "$expected" ] && grep -q '^prefix=/opt/ddpm$' "$dest/opt/ddpm/lib/pkgconfig/ddpm.pc" &&
    ok "make install PREFIX=/opt/ddpm DESTDIR=$dest" || { bad "make install with DESTDIR:"; tail -20 "$tmp/install2.log"; }
mk uninstall PREFIX=/opt/ddpm DESTDIR="$dest" > "$tmp/uninstall2.log" 2>&1 && left=$(installed "$dest") && [ -z "$left" ] &&
    ok "make uninstall with DESTDIR removes every file" || bad "make uninstall with DESTDIR left: $(echo $left)"

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
