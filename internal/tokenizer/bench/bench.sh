#!/bin/sh
# Encode throughput of lathe's tokenizer vs tokenizers.js (transformers.js)
# on the same text and tokenizer files. Run from anywhere; needs node and
#   (cd internal/tokenizer/testdata/js && npm ci --ignore-scripts)
# Extra arguments go to the Go program, e.g. -mb 8 -seconds 10 -tokenizers qwen3.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/../.."
exec go run ./internal/tokenizer/bench -root internal/tokenizer "$@"
