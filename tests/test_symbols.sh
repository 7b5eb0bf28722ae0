#!/usr/bin/env bash
# test_symbols.sh -- libddpm exports its public API and nothing else (scripts/run-tests.sh runs it
# with DDPM_BUILD set):
#   1. every defined global symbol of $DDPM_BUILD/libddpm.so (nm -D) and libddpm.a (nm -g) starts
#      with ddpm_;
#   2. each library's exported set is exactly the functions include/ddpm.h declares DDPM_API
#      (an export the header does not declare fails, and so does a declared one that is missing);
#   3. libddpm.so's soname (readelf -d) is libddpm.so.MAJOR, MAJOR from DDPM_VERSION_MAJOR;
#   4. a program defining its own ops_gemm, file_make_dirs, ops_add_rows and exec_buffer (internal
#      names of ddpm) links statically against libddpm.a with the libraries of `pkg-config --static`
#      ($DDPM_BUILD/ddpm.pc), and runs, calling its own functions and the library's;
#   5. the prefix rule of src/README.md on libddpm-internal.a: every global name of an object of
#      src/FOLDER/ starts with one of FOLDER's prefixes, and no prefix belongs to two folders;
#   6. the kernels' copies per instruction-set level (src/core/cpu.h) use that level's instructions
#      and none above.
# Each check is first run on an input made bad on purpose and must fail there (the "control"
# lines): the checks can fail.
set -u
B=${DDPM_BUILD:-build}
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

so=$B/libddpm.so
ar=$B/libddpm.a
for f in "$so" "$ar" include/ddpm.h; do
    [ -e "$f" ] || { echo "FAIL  $f is missing (make BUILD=$B)"; exit 1; }
done

# ---- the symbol lists (one name a line, sorted)
nm -D --defined-only "$so" | awk 'NF >= 3 { print $3 }' | sort -u > "$tmp/so"
nm -g --defined-only "$ar" | awk 'NF >= 3 { print $3 }' | sort -u > "$tmp/a"
# The functions declared DDPM_API: the name before the first '(' of each declaration's first line.
sed -n 's/^[[:space:]]*DDPM_API[[:space:]][^(]*[^A-Za-z0-9_]\([A-Za-z_][A-Za-z0-9_]*\)[[:space:]]*(.*/\1/p' \
    include/ddpm.h | sort -u > "$tmp/header"

# Names in the list $1 that lack the prefix.
unprefixed() { grep -v '^ddpm_' "$1"; }
# "+name" for each name of $1 (exported) that $2 (the header) lacks, "-name" for the reverse.
difference() { comm -23 "$1" "$2" | sed 's/^/+/'; comm -13 "$1" "$2" | sed 's/^/-/'; }
soname_of() { readelf -d "$1" | sed -n 's/.*Library soname: \[\(.*\)\].*/\1/p'; }

n=$(wc -l < "$tmp/header")
[ "$n" -ge 20 ] && ok "include/ddpm.h declares $n DDPM_API functions" ||
    bad "include/ddpm.h: only $n DDPM_API functions found (is the parse broken?)"

# ---- 1. the prefix (control: a list with gemm in it)
{ cat "$tmp/so"; echo gemm; } | sort > "$tmp/bad_list"
[ -n "$(unprefixed "$tmp/bad_list")" ] && ok "control: the prefix check catches gemm" ||
    bad "control: the prefix check missed gemm"
for lib in so a; do
    extra=$(unprefixed "$tmp/$lib" | tr '\n' ' ')
    [ -z "$extra" ] && ok "libddpm.$lib: $(wc -l < "$tmp/$lib") symbols, all ddpm_" ||
        bad "libddpm.$lib exports symbols without the ddpm_ prefix: $extra"
done

# ---- 2. exactly the header's functions (control: one name dropped, one added)
{ sed 1d "$tmp/header"; echo ddpm_not_declared; } | sort > "$tmp/bad_exports"
d=$(difference "$tmp/bad_exports" "$tmp/header" | tr '\n' ' ')
[ "$d" = "+ddpm_not_declared -$(head -1 "$tmp/header") " ] && ok "control: the set check catches both directions ($d)" ||
    bad "control: the set check gave '$d'"
for lib in so a; do
    d=$(difference "$tmp/$lib" "$tmp/header" | tr '\n' ' ')
    [ -z "$d" ] && ok "libddpm.$lib exports exactly the DDPM_API functions of include/ddpm.h" ||
        bad "libddpm.$lib against include/ddpm.h (+ exported, not declared; - declared, not exported): $d"
done

# ---- 3. the soname (control: a library with another one)
major=$(sed -n 's/^#define DDPM_VERSION_MAJOR \([0-9][0-9]*\).*/\1/p' include/ddpm.h)
echo 'int ddpm_x(void) { return 0; }' > "$tmp/x.c"
cc -shared -fPIC -Wl,-soname,libddpm.so.99 "$tmp/x.c" -o "$tmp/libx.so" &&
    [ "$(soname_of "$tmp/libx.so")" != "libddpm.so.$major" ] && ok "control: the soname check catches libddpm.so.99" ||
    bad "control: the soname check"
s=$(soname_of "$so")
[ "$s" = "libddpm.so.$major" ] && ok "soname $s" || bad "soname '$s', expected libddpm.so.$major"
[ "$(readlink -f "$so")" = "$(readlink -f "$B/libddpm.so.$major")" ] && ok "libddpm.so -> libddpm.so.$major" ||
    bad "$B/libddpm.so and $B/libddpm.so.$major are not the same library"

# ---- 4. a host program with ddpm's internal names links statically
cat > "$tmp/host.c" <<'EOF'
/* A program that happens to use the names of ddpm's internal functions. */
#include <stdio.h>
#include <string.h>
#include <ddpm.h>
int ops_gemm(int a) { return a + 1; }
int file_make_dirs(int a) { return a + 2; }
int ops_add_rows(int a) { return a + 3; }
void *exec_buffer(void) { return NULL; }
int main(int argc, char **argv)
{
    (void)argv;
    if (argc > 100) { /* never run: pulls in the whole library */
        ddpm_model *m = NULL;
        ddpm_model_load("x", &m);
        ddpm_make_dirs("x");
        ddpm_sample(m, NULL, 1, NULL, NULL);
    }
    int mine = ops_gemm(0) + file_make_dirs(0) + ops_add_rows(0) + (exec_buffer() == NULL);
    printf("%s %d\n", ddpm_version(), mine);
    return strcmp(ddpm_version(), DDPM_VERSION) != 0 || mine != 7;
}
EOF
# The libraries of a static link from the build's ddpm.pc, with libddpm.a itself.
if ! libs=$(pkg-config --static --libs "$B/ddpm.pc"); then
    bad "pkg-config --static --libs $B/ddpm.pc"
    libs="-lddpm"
fi
san=""
nm "$ar" 2>/dev/null | grep -q ' U __asan_' && san="-fsanitize=address,undefined"
link() { cc -std=c11 -Iinclude $san "$tmp/host.c" -o "$tmp/host" -L"$B" $(echo "$libs" | sed "s/-lddpm\b/$1/") 2> "$tmp/link.log"; }
# Control: against the internal archive, whose ops_gemm, file_make_dirs ... are global, the link must fail.
if [ -f "$B/libddpm-internal.a" ]; then
    ! link "-l:libddpm-internal.a" && grep -q 'multiple definition' "$tmp/link.log" &&
        ok "control: the same program against libddpm-internal.a fails to link (multiple definition)" ||
        bad "control: linking against libddpm-internal.a did not fail with a multiple definition"
fi
if link "-l:libddpm.a"; then
    out=$("$tmp/host") && ok "a program defining ops_gemm, file_make_dirs, ops_add_rows, exec_buffer links with libddpm.a and runs ($out)" ||
        bad "the statically linked program failed: $out"
else
    bad "a program defining ops_gemm, file_make_dirs, ops_add_rows, exec_buffer does not link with libddpm.a:"
    head -20 "$tmp/link.log"
fi

# ---- 5. the prefix rule (src/README.md, "Names"), on every object of libddpm-internal.a: each
# global name starts with a prefix of the folder its object comes from, and no prefix belongs to
# two folders. (Controls: a table with a prefix in two folders; a listing with a stray name.)
# "folder prefix" lines from the README's table.
sed -n '/^| folder | prefixes/,/^$/p' src/README.md | awk -F'|' 'NR > 2 && NF > 3 {
    f = $2; gsub(/ /, "", f); n = split($3, w, "`"); for (i = 2; i <= n; i += 2) print f, w[i] }' > "$tmp/prefixes"
# Names of the listing $1 ("folder name" lines) whose prefix is not their folder's.
strays() {
    awk 'NR == FNR { ok[$1, $2] = 1; next }
         { hit = 0; for (k in ok) { split(k, p, SUBSEP); if (p[1] == $1 && index($2, p[2]) == 1) hit = 1 }
           if (!hit) print $1 "/" $2 }' "$tmp/prefixes" "$1"
}
# Prefixes that more than one folder claims.
shared() { awk '{ n[$2]++ } END { for (p in n) if (n[p] > 1) print p }' "$1"; }
np=$(wc -l < "$tmp/prefixes")
[ "$np" -ge 11 ] && ok "src/README.md's table gives $np prefixes" || bad "src/README.md's table: only $np prefixes (is the parse broken?)"
{ cat "$tmp/prefixes"; echo "ops err_"; } > "$tmp/bad_prefixes"
[ "$(shared "$tmp/bad_prefixes")" = "err_" ] && ok "control: a prefix claimed by two folders is caught" ||
    bad "control: a prefix in two folders was not caught"
d=$(shared "$tmp/prefixes" | tr '\n' ' ')
[ -z "$d" ] && ok "every prefix belongs to one folder" || bad "prefixes claimed by several folders: $d"
internal=$B/libddpm-internal.a
if [ -f "$internal" ]; then
    : > "$tmp/names"
    for o in "$B"/src/*/*.o; do
        f=$(basename "$(dirname "$o")")
        # Names that start with "__" are the compiler's (ASan's __odr_asan.*), never ours.
        nm -g --defined-only "$o" | awk -v f="$f" 'NF >= 3 && $3 !~ /^__/ { print f, $3 }' >> "$tmp/names"
    done
    members=$(ar t "$internal" | wc -l) objects=$(ls "$B"/src/*/*.o | wc -l)
    [ "$members" -eq "$objects" ] && ok "libddpm-internal.a holds the $objects objects of $B/src" ||
        bad "libddpm-internal.a has $members members, $B/src $objects objects"
    { cat "$tmp/names"; echo "ops gemm"; } > "$tmp/bad_names"
    [ "$(strays "$tmp/bad_names")" = "ops/gemm" ] && ok "control: the prefix rule catches ops/gemm" ||
        bad "control: the prefix rule missed ops/gemm"
    s=$(strays "$tmp/names" | tr '\n' ' ')
    [ -z "$s" ] && ok "libddpm-internal.a: $(wc -l < "$tmp/names") global names, each with its folder's prefix" ||
        bad "names without their folder's prefix (src/README.md): $s"
else
    bad "$internal is missing"
fi

# ---- 6. the kernels' copies (src/core/cpu.h): each instruction-set level's objects use its
# instructions and none above. The x86-64 copies, and the rest of the library (unless ARCH= chose
# a CPU), have no VEX or EVEX instruction (no mnemonic starts with v); the avx2 copies have VEX
# instructions and nothing only EVEX can encode (zmm, the mask registers k0-k7, registers 16-31);
# the avx512 copies have such instructions. (Control: the x86-64 check on the avx2 copies fails.)
# "vex evex": how many instructions of the objects $@ are VEX/EVEX, and need EVEX.
isa_use() {
    objdump -d --no-show-raw-insn "$@" | awk -F'\t' 'NF >= 2 { i = $NF; v += i ~ /^v/
        e += i ~ /%zmm|%k[0-7]|%[xyz]mm(1[6-9]|2[0-9]|3[01])/ } END { print v + 0, e + 0 }'
}
copies() { ls "$B"/src/*/*."$1".o 2> /dev/null; }
if [ -z "$(copies x86_64)" ] || [ -z "$(copies avx2)" ] || [ -z "$(copies avx512)" ]; then
    bad "the kernels' copies ($B/src/*/*.{x86_64,avx2,avx512}.o) are missing"
else
    if grep -q -- '-march=x86-64 ' "$B/cflags.txt"; then
        base=$(ls "$B"/src/*/*.o | grep -v '\.avx2\.o$\|\.avx512\.o$')
        read -r v e <<< "$(isa_use $base)"
        [ "$v" -eq 0 ] && ok "the library's $(wc -w <<< "$base") baseline objects, x86-64 copies included: no VEX/EVEX instruction" ||
            bad "baseline objects: $v VEX/EVEX instructions"
    else
        ok "(built with ARCH=$(grep -o -- '-march=[^ ]*' "$B/cflags.txt" | head -1): the baseline is that CPU's)"
    fi
    read -r v e <<< "$(isa_use $(copies avx2))"
    [ "$v" -gt 0 ] && ok "control: the x86-64 check fails on the avx2 copies ($v VEX instructions)" ||
        bad "control: the avx2 copies pass the x86-64 check"
    [ "$v" -gt 0 ] && [ "$e" -eq 0 ] && ok "avx2 copies: $v VEX instructions, none that needs EVEX" ||
        bad "avx2 copies: $v VEX/EVEX instructions, $e that need EVEX"
    read -r v e <<< "$(isa_use $(copies avx512))"
    [ "$e" -gt 0 ] && ok "avx512 copies: $e instructions that need EVEX (AVX-512)" || bad "avx512 copies: no AVX-512 instruction"
fi

echo "$fails failure(s)"
[ "$fails" -eq 0 ]
