#!/usr/bin/env bash
# Runs the fuzz targets ($2, default all) for $1 seconds each (default 900), one after another,
# with the seed corpora in seeds/. Crashes land in artifacts/<target>/; add each as a regression test.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-900}
targets=${2:-"gguf_reader model_load tokenizer hf_import completion_params"}
for t in $targets; do
    mkdir -p "corpus/$t" "seeds/$t"
    echo "== $t for ${secs}s"
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -max_len=65536 -rss_limit_mb=2048 -timeout=20 > "run-$t.log" 2>&1 \
        || echo "!! $t stopped early: see run-$t.log and artifacts/$t/"
    grep -E "^Done|SUMMARY" "run-$t.log" || true
done
