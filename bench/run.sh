#!/usr/bin/env bash
# Runs drover's benchmarks on this machine and prints their tables, peers side by side.
# Prepares what they need: the test images, a release build, wrk and Slurm (Debian's
# slurm-wlm, which brings munge), and a virtualenv per pinned peer (MLflow's server and
# FastTrackML cannot share one; Optuna).
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/images/build.sh
cargo build --release --locked -p drover -p drover-bench

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
for program in slurmctld slurmd sbatch munged; do
    command -v "$program" >/dev/null 2>&1 || { missing+=(slurm-wlm); break; }
done
if ((${#missing[@]})); then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
venvs="$PWD/target/bench-venvs"
for peer in "mlflow==3.17.2" "fasttrackml==0.6.0" "optuna==5.0.0"; do
    name=${peer%%==*}
    if [[ "$(cat "$venvs/$name/.installed" 2>/dev/null)" != "$peer" ]]; then
        rm -rf "${venvs:?}/$name"
        python3 -m venv "$venvs/$name"
        "$venvs/$name/bin/pip" install --quiet --disable-pip-version-check "$peer"
        echo "$peer" >"$venvs/$name/.installed"
    fi
done

./target/release/run_overhead
./target/release/lineage
./target/release/tracking
OPTUNA_PYTHON="$venvs/optuna/bin/python" ./target/release/sweeps
./target/release/versus_slurm
./target/release/placement
./target/release/scale
MLFLOW_BIN="$venvs/mlflow/bin/mlflow" ./target/release/ui
MLFLOW_SERVER_BIN="$venvs/mlflow/bin/mlflow" FML_BIN="$venvs/fasttrackml/bin/fml" \
    "$venvs/mlflow/bin/python" bench/peers.py
MLFLOW_SERVER_BIN="$venvs/mlflow/bin/mlflow" FML_BIN="$venvs/fasttrackml/bin/fml" \
    "$venvs/mlflow/bin/python" bench/models.py
