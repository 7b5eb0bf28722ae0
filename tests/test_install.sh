#!/usr/bin/env bash
# test_install.sh -- `make install` into a temporary prefix from the build $DDPM_BUILD (already built:
# install must not rebuild it), then as a program outside would: build examples/sample.c and
# examples/train.c with `pkg-config --cflags --libs ddpm` (and sample once more statically, with
# `pkg-config --static`), train a tiny model for a few steps (the tiny fixture config, 8x8 gray
# images from an IDX file written here), sample a 4x4 grid from it and check the PNG's size, run the
# installed ddpm and read its man page; then `make uninstall` must leave nothing of ours, and the
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
