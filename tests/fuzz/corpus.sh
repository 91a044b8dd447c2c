#!/bin/sh
# corpus.sh - builds the seed corpora of the fuzz targets (make fuzz-corpus).
#
# Usage: tests/fuzz/corpus.sh OUTDIR, from the repository top, after make
# has built bin/circmon-gen and build/fuzz/mkseeds. OUTDIR/<target>/ holds
# each target's seeds: messages, runs and states from a small circmon-gen
# stream, and config/*.conf for fuzz_config. Nothing here is committed.
set -eu
out=$1
rm -rf "$out"
for t in fuzz_decode fuzz_engine fuzz_state fuzz_config; do
    mkdir -p "$out/$t"
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/cm-corpus.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
bin/circmon-gen --seed 1 --migrants 300 --out "$tmp/events.bin" 2>/dev/null
build/fuzz/mkseeds "$tmp/events.bin" "$out"
for f in config/*.conf config/*.conf.example; do
    [ -f "$f" ] && cp "$f" "$out/fuzz_config/${f##*/}"
done
