#!/usr/bin/env bash
# The property tests, run long: every parser fed by users or the network (MLproject and sweep
# files, -P values and command templates, snapshot archives, metric lines, the search grammar,
# REST bodies) against PROPTEST_CASES generated cases per property, 100 times what
# `cargo test` runs. Each case must not panic, must finish within 2 s, and the process must
# stay under 1 GiB resident.
#
#   tests/properties.sh            # 25,600 cases per property, about 15 minutes on 2 cores
#   tests/properties.sh 2560       # a quicker pass
set -euo pipefail
cd "$(dirname "$0")/.."
cases="${1:-25600}"
echo "property tests, ${cases} cases per property"
PROPTEST_CASES="$cases" cargo test --release --locked --no-fail-fast \
    -p drover-project -p drover-worker -p drover-scheduler --lib props
