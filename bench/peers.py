"""drover's tracking API side by side with MLflow's own server and FastTrackML.

Each server runs alone on loopback (sqlite backends for the peers), then:
- server-bound ingest: wrk, 16 connections, POSTing `runs/log-batch` requests of 100 metrics
  (ten keys) for 10 s — points/s (2xx only) and p99 latency;
- client-bound: the official `mlflow` client creating runs, `log_metric` calls/s,
  `log_batch` points/s, `get_metric_history` of 20,000 points, and `search_runs` with a filter
  (median of five calls, and the first);
- the store on disk once the server has stopped (blocks allocated, as `du` counts them),
  divided by the metric points logged: everything above, wrk's batches counted by the
  responses it got (requests still in flight when wrk stops add at most 16 x 100 points).

Run by bench/run.sh, which prepares the virtualenv with the pinned peers and wrk.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

import mlflow  # noqa: E402
from mlflow.entities import Metric  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DROVER = os.environ.get("DROVER_BIN", os.path.join(ROOT, "target", "release", "drover"))
VENV_BIN = os.path.dirname(sys.executable)
WRK_SECONDS = 10
WRK_CONNECTIONS = 16
BATCH_METRICS = 100
WRK_BODIES = 1000
# Points the client-bound part logs: log_metric, log_batch, and one per run for the search.
CLIENT_POINTS = 1000 + 20_000 + 200

# Each wrk thread builds its requests before the clock starts (1,000 bodies of distinct steps,
# sent in turn), so the load generator spends its share of the two cores on sending, not on
# formatting JSON.
WRK_SCRIPT = """
local threads = 0
setup = function(thread)
  thread:set("id", threads)
  threads = threads + 1
end
init = function(args)
  requests = {}
  for n = 1, %(bodies)d do
    local counter = id * %(bodies)d + n
    local metrics = {}
    for i = 1, %(batch)d do
      metrics[i] = string.format('{"key":"m%%d","value":%%d.5,"timestamp":%%d,"step":%%d}', i %% 10, i, counter + 1, counter * %(batch)d + i)
    end
    local body = '{"run_id":"%(run_id)s","metrics":[' .. table.concat(metrics, ",") .. ']}'
    requests[n] = wrk.format("POST", "/api/2.0/mlflow/runs/log-batch", {["Content-Type"] = "application/json"}, body)
  end
  sent = 0
end
request = function()
  sent = sent %% %(bodies)d + 1
  return requests[sent]
end
"""


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url, process, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except Exception:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


def start(name, work, proxied_artifacts=False):
    """Starts one server on a free port. With `proxied_artifacts`, MLflow's server keeps
    artifacts behind its own artifact proxy (`mlflow-artifacts:` URIs over HTTP, as drover
    does) rather than handing clients a local path to write to."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(os.path.join(work, f"{name}.log"), "w")
    if name == "drover":
        command = [DROVER, "scheduler", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(work, "drover")]
    elif name == "mlflow":
        command = [
            os.environ.get("MLFLOW_SERVER_BIN", os.path.join(VENV_BIN, "mlflow")), "server",
            "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{work}/mlflow.db",
        ] + (
            ["--artifacts-destination", os.path.join(work, "mlflow-artifacts")]
            if proxied_artifacts
            else ["--default-artifact-root", os.path.join(work, "mlflow-artifacts")]
        )
    else:
        command = [
            os.environ.get("FML_BIN", shutil.which("fml") or "fml"), "server",
            "--listen-address", f"127.0.0.1:{port}",
            "--database-uri", f"sqlite://{work}/fasttrackml.db",
            "--default-artifact-root", os.path.join(work, "fml-artifacts"),
        ]
    process = subprocess.Popen(command, stdout=log, stderr=log, cwd=work)
    wait_until_up(url, process)
    return process, url


def store_bytes(name, work):
    """Blocks the server's store takes on disk: drover's data directory, the peers' sqlite
    database with its journal files."""
    if name == "drover":
        paths = [os.path.join(root, f) for root, _, files in os.walk(os.path.join(work, "drover")) for f in files]
    else:
        prefix = "mlflow.db" if name == "mlflow" else "fasttrackml.db"
        paths = [os.path.join(work, f) for f in os.listdir(work) if f.startswith(prefix)]
    return sum(os.stat(path).st_blocks * 512 for path in paths)


def server_bound(url, work):
    client = MlflowClient(url)
    experiment = client.create_experiment(f"wrk-{time.time_ns()}")
    run_id = client.create_run(experiment).info.run_id
    script = os.path.join(work, "log_batch.lua")
    with open(script, "w") as handle:
        handle.write(WRK_SCRIPT % {"batch": BATCH_METRICS, "bodies": WRK_BODIES, "run_id": run_id})
    output = subprocess.run(
        ["wrk", "-t2", f"-c{WRK_CONNECTIONS}", f"-d{WRK_SECONDS}s", "--latency", "-s", script, url],
        capture_output=True, text=True, check=True,
    ).stdout
    requests_done = failed = 0
    p99 = "?"
    for line in output.splitlines():
        words = line.split()
        if "requests in" in line:
            requests_done = int(words[0])
        if line.strip().startswith("Non-2xx or 3xx responses:"):
            failed = int(words[-1])
        if line.strip().startswith("99%"):
            p99 = words[1]
    points = (requests_done - failed) * BATCH_METRICS / WRK_SECONDS
    return points, p99, failed, (requests_done - failed) * BATCH_METRICS


def client_bound(url):
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    experiment = client.create_experiment(f"client-{time.time_ns()}")
    figures = {}

    started = time.perf_counter()
    runs = [client.create_run(experiment).info.run_id for _ in range(200)]
    figures["create_run"] = f"{200 / (time.perf_counter() - started):.0f} runs/s"

    started = time.perf_counter()
    for step in range(1000):
        client.log_metric(runs[0], "loss", 1.0 / (step + 1), timestamp=step + 1, step=step)
    figures["log_metric"] = f"{1000 / (time.perf_counter() - started):.0f} calls/s"

    started = time.perf_counter()
    for batch in range(20):
        metrics = [Metric("curve", float(i), batch + 1, batch * 1000 + i) for i in range(1000)]
        client.log_batch(runs[1], metrics=metrics)
    figures["log_batch"] = f"{20_000 / (time.perf_counter() - started):.0f} points/s"

    started = time.perf_counter()
    history = client.get_metric_history(runs[1], "curve")
    assert len(history) == 20_000, len(history)
    figures["get_metric_history"] = f"{(time.perf_counter() - started) * 1000:.0f} ms"

    for index, run_id in enumerate(runs):
        client.log_batch(run_id, metrics=[Metric("rmse", index / 200, 1, 0)], params=[mlflow.entities.Param("alpha", str(index % 10))])
    # The median of five: one call is at the mercy of the machine's noise. The first call
    # after the writes is the slowest for every server (caches are cold).
    timings = []
    for _ in range(5):
        started = time.perf_counter()
        found = client.search_runs([experiment], "metrics.rmse < 0.5 and params.alpha = '3'", max_results=1000)
        timings.append(time.perf_counter() - started)
        assert len(found) == 10, len(found)
    figures["search_runs"] = f"{sorted(timings)[2] * 1000:.1f} ms (first {timings[0] * 1000:.1f})"
    return figures, CLIENT_POINTS


def main():
    servers = [name for name in sys.argv[1:]] or ["drover", "mlflow", "fasttrackml"]
    results = {}
    for name in servers:
        work = tempfile.mkdtemp(prefix=f"bench-{name}-")
        process, url = start(name, work)
        try:
            print(f"measuring {name} at {url}", file=sys.stderr, flush=True)
            points, p99, failed, wrk_points = server_bound(url, work)
            figures, client_points = client_bound(url)
            figures["ingest"] = f"{points:,.0f} points/s"
            figures["ingest_p99"] = p99 + (f" ({failed} failed)" if failed else "")
            results[name] = figures
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
        try:
            logged = wrk_points + client_points
            figures["store_per_point"] = f"{store_bytes(name, work) / logged:.1f} bytes ({logged:,} points)"
        finally:
            shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("server-bound log-batch (wrk, 16 conns, 100 metrics)", "ingest"),
        ("  p99 latency", "ingest_p99"),
        ("client: create_run", "create_run"),
        ("client: log_metric", "log_metric"),
        ("client: log_batch", "log_batch"),
        ("client: get_metric_history, 20k points", "get_metric_history"),
        ("client: search_runs, filter over 200 runs", "search_runs"),
        ("store on disk per metric point", "store_per_point"),
    ]
    width = max(len(label) for label, _ in rows)
    print()
    print("| " + "measure".ljust(width) + " | " + " | ".join(name.ljust(22) for name in results) + " |")
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * 24 for _ in results) + "|")
    for label, key in rows:
        print("| " + label.ljust(width) + " | " + " | ".join(results[name].get(key, "?").ljust(22) for name in results) + " |")
    print(json.dumps(results), file=sys.stderr)


if __name__ == "__main__":
    main()
