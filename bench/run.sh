#!/usr/bin/env bash
# Runs drover's benchmarks on this machine and prints their tables.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/images/build.sh
cargo build --release --locked -p drover -p drover-bench
./target/release/run_overhead
./target/release/tracking
