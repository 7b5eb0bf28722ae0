#!/usr/bin/env bash
# test_layers.sh -- the folders of src/ form layers (src/README.md): a folder includes headers of
# its own folder and of the folders to its right in the README's line of layers, never of one to
# its left. So no two folders include each other, directly or through a third, and diffusion/
# includes nothing from model/. A control (a made-up include of api/ from core/) must fail first.
set -u
layers=$(sed -n '/^The folders form layers/,/^A folder includes/p' src/README.md | grep -E '^    [a-z]' | xargs)
[ -n "$layers" ] || { echo "FAIL  no line of layers in src/README.md"; exit 1; }
rank() { local i=0; for l in $layers; do [ "$l" = "$1" ] && { echo $i; return; }; i=$((i + 1)); done; echo -1; }
# Prints "file: includes X (left of F)" for each include of $1 (lines "folder file include-folder").
violations() {
    while read -r f file inc; do
        rf=$(rank "$f") ri=$(rank "$inc")
        [ "$rf" -lt 0 ] && { echo "$file: folder $f is not in src/README.md's layers"; continue; }
        [ "$ri" -lt 0 ] && continue # not a folder of src/ (e.g. "ddpm.h")
        [ "$ri" -lt "$rf" ] && echo "$file: includes $inc/, which is left of $f/"
    done < "$1"
}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for file in src/*/*.c src/*/*.h; do
    f=$(basename "$(dirname "$file")")
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([a-z_]*\)\/.*/\1/p' "$file" | sort -u |
        while read -r inc; do echo "$f $file $inc"; done
done > "$tmp/includes"
fails=0
echo "core src/core/made_up.c api" > "$tmp/control"
if [ -n "$(violations "$tmp/control")" ]; then echo "ok    control: an include of api/ from core/ is caught"
else echo "FAIL  control: an include of api/ from core/ was not caught"; fails=1; fi
bad=$(violations "$tmp/includes")
if [ -z "$bad" ]; then echo "ok    $(wc -l < "$tmp/includes") folder includes follow the layers: $layers"
else echo "FAIL  includes against the layers:"; echo "$bad"; fails=1; fi
grep -q '^diffusion .* model$' "$tmp/includes" && { echo "FAIL  diffusion/ includes model/"; fails=1; }
exit $fails
