#!/bin/bash -eu
# ClusterFuzzLite / OSS-Fuzz build: every cargo-fuzz target, seeded with its corpus.
cd "$SRC/thinsim/fuzz"
cargo fuzz build -O
for target in btree_ops image_bytes sim space_map_ops xml_restore; do
    cp "target/x86_64-unknown-linux-gnu/release/$target" "$OUT/"
    (cd "$SRC/thinsim/corpus/$target" && zip -q -r "$OUT/${target}_seed_corpus.zip" .)
done
