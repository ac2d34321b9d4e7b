"""Models through the official client: drover beside MLflow's own server and FastTrackML.

Each server runs alone on loopback (sqlite for the peers, as `peers.py` starts them; MLflow's
server keeps artifacts behind its artifact proxy, so every server moves model files over
HTTP), then,
with the official `mlflow` client and scikit-learn:
- `log_model` round trip: a fitted LogisticRegression logged with `mlflow.sklearn.log_model`
  in a run, then loaded back from `models:/<id>` (median of ten, milliseconds);
- `register_model`: new versions of one registered model from a logged model, by 8 threads
  at once (calls/s over 400 calls; every number must come back once);
- `search_registered_models` over 10,000 registered models: a name filter matching 100
  (median of five calls), and listing all 10,000 in pages of 1,000.
A server that does not serve a call gets the client's error instead of a figure.

Run by bench/run.sh, with the python of the virtualenv that holds mlflow==3.17.2.
"""

import concurrent.futures
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from peers import start  # noqa: E402

import mlflow  # noqa: E402
import numpy as np  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

# The client notes every registration it waits for; the tables are what matters here.
logging.getLogger("mlflow").setLevel(logging.WARNING)

SEARCH_MODELS = 10_000
REGISTRATIONS = 400
THREADS = 8


def failure(error):
    text = str(getattr(error, "error_code", "") or error).splitlines()[0]
    return f"not served ({text[:60]})"


def log_model_round_trip(url):
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment(f"models-{time.time_ns()}")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 4))
    model = LogisticRegression().fit(X, X[:, 0] > 0)
    log_ms, load_ms, model_id = [], [], None
    for _ in range(10):
        with mlflow.start_run():
            started = time.perf_counter()
            info = mlflow.sklearn.log_model(model, name="model")
            log_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        loaded = mlflow.sklearn.load_model(info.model_uri)
        load_ms.append((time.perf_counter() - started) * 1000)
        assert (loaded.predict(X[:5]) == model.predict(X[:5])).all()
        model_id = info.model_id
    return statistics.median(log_ms), statistics.median(load_ms), model_id


def register(url, model_id):
    client = MlflowClient(url)
    name = f"registered-{time.time_ns()}"
    client.create_registered_model(name)
    source = f"models:/{model_id}"

    def one(_):
        return client.create_model_version(name, source, model_id=model_id).version

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=THREADS) as pool:
        versions = list(pool.map(one, range(REGISTRATIONS)))
    elapsed = time.perf_counter() - started
    if sorted(int(v) for v in versions) != list(range(1, REGISTRATIONS + 1)):
        return "versions repeated or skipped"
    return f"{REGISTRATIONS / elapsed:,.0f} calls/s"


def search(url):
    client = MlflowClient(url)

    def create(index):
        client.create_registered_model(f"model-{index:05d}", tags={"team": str(index % 7)})

    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=THREADS) as pool:
        list(pool.map(create, range(SEARCH_MODELS)))
    print(f"  {SEARCH_MODELS} registered models created in {time.perf_counter() - started:.0f} s",
          file=sys.stderr, flush=True)
    filtered = []
    for _ in range(5):
        started = time.perf_counter()
        found = client.search_registered_models(filter_string="name LIKE 'model-012%'")
        filtered.append((time.perf_counter() - started) * 1000)
        assert len(found) == 100, len(found)
    started = time.perf_counter()
    listed, token = 0, None
    while True:
        page = client.search_registered_models(max_results=1000, page_token=token)
        listed += len(page)
        token = page.token
        if not token:
            break
    every = (time.perf_counter() - started) * 1000
    assert listed >= SEARCH_MODELS, listed
    return f"{statistics.median(filtered):.1f} ms", f"{every:.0f} ms"


def measure(url):
    figures = {}
    try:
        log_ms, load_ms, model_id = log_model_round_trip(url)
        figures["log_model"] = f"{log_ms:.0f} ms"
        figures["load_model"] = f"{load_ms:.0f} ms"
    except Exception as error:  # a peer that does not serve logged models
        figures["log_model"] = figures["load_model"] = failure(error)
        model_id = None
    if model_id is not None:
        try:
            figures["register"] = register(url, model_id)
        except Exception as error:
            figures["register"] = failure(error)
    else:
        figures["register"] = "no logged model to register"
    try:
        figures["search"], figures["list_all"] = search(url)
    except Exception as error:
        figures["search"] = figures["list_all"] = failure(error)
    return figures


def main():
    servers = sys.argv[1:] or ["drover", "mlflow", "fasttrackml"]
    results = {}
    for name in servers:
        work = tempfile.mkdtemp(prefix=f"bench-models-{name}-")
        process, url = start(name, work, proxied_artifacts=True)
        try:
            print(f"measuring {name} at {url}", file=sys.stderr, flush=True)
            results[name] = measure(url)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
            shutil.rmtree(work, ignore_errors=True)
    rows = [
        ("log_model, small sklearn model (median of 10)", "log_model"),
        ("load_model from models:/<id> (median of 10)", "load_model"),
        (f"register_model, {THREADS} threads x {REGISTRATIONS // THREADS} versions", "register"),
        (f"search_registered_models, name filter over {SEARCH_MODELS:,}", "search"),
        (f"list all {SEARCH_MODELS:,} registered models, pages of 1,000", "list_all"),
    ]
    width = max(len(label) for label, _ in rows)
    print("\nModels through the official client (this machine)\n")
    print("| " + "measure".ljust(width) + " | " + " | ".join(name.ljust(24) for name in results) + " |")
    print("|" + "-" * (width + 2) + "|" + "|".join("-" * 26 for _ in results) + "|")
    for label, key in rows:
        print("| " + label.ljust(width) + " | " + " | ".join(results[name].get(key, "?").ljust(24) for name in results) + " |")


if __name__ == "__main__":
    main()
