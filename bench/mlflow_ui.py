"""MLflow 3.17.2's tracking server over a large sqlite store, for the `ui` benchmark.

    python mlflow_ui.py fill  --dir D --runs N --points P
    python mlflow_ui.py serve --dir D --port PORT

`fill` lets MLflow create its schema in D/mlflow.db and the experiment `ui-bench`, then
bulk-inserts with sqlite3 (one transaction) N runs, each with params p0..p9 and metrics
m0..m9 (the same values as drover's `ui` benchmark logs), and one run `long-history` with P
points of `loss` (steps 0..P-1). It prints one JSON line: the experiment's id, the long run's
id and the number of runs. Filling through MLflow's REST API instead would take hours.

`serve` starts `mlflow server` on that store with 4 workers, prints one JSON line with its
URL once it answers, and stays in the foreground until killed. The server runs workers and a
job runner of its own, so end the whole process group (Ctrl-C in a shell does; the benchmark
starts the script in a group of its own and kills that group). The server's output goes to
D/server.log.

Run with the python of the virtualenv that holds mlflow==3.17.2 (bench/run.sh makes it).
"""

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

KEYS = 10
START_MS = 1_700_000_000_000
EXPERIMENT = "ui-bench"


def database(directory):
    """The sqlite file of the store in `directory`."""
    return os.path.join(os.path.abspath(directory), "mlflow.db")


def create_schema(directory):
    """Lets MLflow create its tables (all migrations) and the experiment; returns the
    experiment's id and artifact location."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    artifacts = os.path.join(os.path.abspath(directory), "artifacts")
    store = SqlAlchemyStore(f"sqlite:///{database(directory)}", artifacts)
    experiment_id = store.create_experiment(EXPERIMENT)
    location = store.get_experiment(experiment_id).artifact_location
    store.engine.dispose()
    return experiment_id, location


def run_rows(experiment_id, location, run_id, name, start_ms):
    """The `runs` row and the `tags` rows MLflow writes when it creates a run."""
    run = (
        run_id, name, "UNKNOWN", "", "", "bench", "FINISHED", start_ms, start_ms + 1, "",
        "active", f"{location}/{run_id}/artifacts", int(experiment_id),
    )
    tags = [("mlflow.user", "bench", run_id), ("mlflow.runName", name, run_id)]
    return run, tags


RUN_INSERT = (
    "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id,"
    " status, start_time, end_time, source_version, lifecycle_stage, artifact_uri,"
    " experiment_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
TAG_INSERT = "INSERT INTO tags (key, value, run_uuid) VALUES (?,?,?)"
PARAM_INSERT = "INSERT INTO params (key, value, run_uuid) VALUES (?,?,?)"
METRIC_INSERT = (
    "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,0)"
)
LATEST_INSERT = (
    "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid)"
    " VALUES (?,?,?,?,0,?)"
)


def insert_runs(connection, experiment_id, location, count):
    """`count` runs named run-0.. with KEYS params and KEYS metrics each (one point, step 0)."""
    runs, tags, params, metrics, latest = [], [], [], [], []
    for i in range(count):
        run_id = uuid.uuid4().hex
        run, run_tags = run_rows(experiment_id, location, run_id, f"run-{i}", START_MS + i)
        runs.append(run)
        tags.extend(run_tags)
        for k in range(KEYS):
            params.append((f"p{k}", str((i * (k + 7)) % 97), run_id))
            value = ((i * 7919 + k * 104_729) % 100_000) / 100_000.0
            metrics.append((f"m{k}", value, START_MS, run_id, 0))
            latest.append((f"m{k}", value, START_MS, 0, run_id))
    connection.executemany(RUN_INSERT, runs)
    connection.executemany(TAG_INSERT, tags)
    connection.executemany(PARAM_INSERT, params)
    connection.executemany(METRIC_INSERT, metrics)
    connection.executemany(LATEST_INSERT, latest)


def loss(step):
    """drover's benchmark curve: a decay, a 7-step wave and one spike."""
    wave = 0.05 if step % 7 < 3 else -0.05
    spike = 5.0 if step == 654_321 else 0.0
    return 1.0 / (1.0 + step / 10_000.0) + wave + spike


def insert_long_run(connection, experiment_id, location, points):
    """The run `long-history` with `points` points of `loss`; returns its id."""
    run_id = uuid.uuid4().hex
    run, tags = run_rows(experiment_id, location, run_id, "long-history", START_MS)
    connection.execute(RUN_INSERT, run)
    connection.executemany(TAG_INSERT, tags)
    connection.executemany(
        METRIC_INSERT, ((("loss", loss(s), START_MS + s, run_id, s)) for s in range(points))
    )
    last = points - 1
    connection.execute(LATEST_INSERT, ("loss", loss(last), START_MS + last, last, run_id))
    return run_id


def fill(args):
    os.makedirs(args.dir, exist_ok=True)
    if os.path.exists(database(args.dir)):
        os.remove(database(args.dir))
    started = time.time()
    experiment_id, location = create_schema(args.dir)
    connection = sqlite3.connect(database(args.dir))
    # For this connection only: the file stays as MLflow leaves it (rollback journal, no
    # ANALYZE statistics), so the server plans its queries as it would on its own store.
    connection.execute("PRAGMA journal_mode=MEMORY")
    connection.execute("PRAGMA synchronous=OFF")
    with connection:
        insert_runs(connection, experiment_id, location, args.runs)
        long_run = insert_long_run(connection, experiment_id, location, args.points)
    connection.close()
    print(f"filled in {time.time() - started:.0f} s", file=sys.stderr)
    print(json.dumps({"experiment_id": experiment_id, "long_run": long_run,
                      "runs": args.runs + 1}), flush=True)


def wait_until_up(url, process, seconds=180):
    """Polls the server's /health until it answers 200, or fails if it exits or stays down."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"mlflow server exited early with {process.returncode}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"mlflow server did not answer within {seconds} s")


def serve(args):
    mlflow = os.path.join(os.path.dirname(sys.executable), "mlflow")
    directory = os.path.abspath(args.dir)
    command = [
        mlflow, "server",
        "--backend-store-uri", f"sqlite:///{database(directory)}",
        "--default-artifact-root", os.path.join(directory, "artifacts"),
        "--host", "127.0.0.1", "--port", str(args.port), "--workers", "4",
    ]
    with open(os.path.join(directory, "server.log"), "a") as log:
        server = subprocess.Popen(command, stdout=log, stderr=log, cwd=directory)
    url = f"http://127.0.0.1:{args.port}"
    wait_until_up(url, server)
    print(json.dumps({"url": url}), flush=True)
    sys.exit(server.wait())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["fill", "serve"])
    parser.add_argument("--dir", required=True)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    if args.mode == "fill":
        fill(args)
    else:
        serve(args)


if __name__ == "__main__":
    main()
