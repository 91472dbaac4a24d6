#!/bin/sh
# Re-creates every corpus image from its XML recipe with thin_restore 0.9.0.
#
#   corpus/images/make.sh DIR        # writes DIR/NAME.img for every recipe below
#   cmp DIR/NAME.img corpus/images/NAME.img
#
# thin_restore 0.9.0 is deterministic (same XML and file size give the same bytes); 1.x places
# blocks differently, so any other version is refused. The image file's size is the metadata
# device size, and blocks thin_restore does not write must be zero: every image starts as a
# fresh sparse file.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: make.sh DIR}

version=$(thin_restore -V)
if [ "$version" != "0.9.0" ]; then
    echo "make.sh: need thin_restore 0.9.0, found $version" >&2
    exit 1
fi

mkdir -p "$out"
# name, metadata size
while read -r name size; do
    img="$out/$name.img"
    rm -f "$img"
    truncate -s "$size" "$img"
    thin_restore -q -i "$here/$name.xml" -o "$img"
done <<LIST
spec-13-1 1M
mappings-2k 2M
devices-300 2M
data-4bitmaps 1M
LIST
