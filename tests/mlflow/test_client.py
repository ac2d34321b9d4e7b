"""The official mlflow client, unchanged, against drover's scheduler."""

import math
import os
import uuid

import mlflow
import pytest
import requests
from mlflow.entities import Metric, Param, RunTag, ViewType
from mlflow.exceptions import MlflowException


def error_code(excinfo):
    return excinfo.value.error_code


def test_experiments_lifecycle(client):
    name = f"lifecycle-{uuid.uuid4().hex[:8]}"
    experiment_id = client.create_experiment(name, tags={"team": "vision"})
    experiment = client.get_experiment(experiment_id)
    assert experiment.name == name
    assert experiment.lifecycle_stage == "active"
    assert experiment.tags["team"] == "vision"
    assert experiment.artifact_location == f"mlflow-artifacts:/{experiment_id}"
    assert client.get_experiment_by_name(name).experiment_id == experiment_id
    assert client.get_experiment_by_name("no-such-experiment-" + uuid.uuid4().hex) is None

    with pytest.raises(MlflowException) as excinfo:
        client.create_experiment(name)
    assert error_code(excinfo) == "RESOURCE_ALREADY_EXISTS"

    client.rename_experiment(experiment_id, name + "-renamed")
    assert client.get_experiment(experiment_id).name == name + "-renamed"
    client.set_experiment_tag(experiment_id, "team", "nlp")
    assert client.get_experiment(experiment_id).tags["team"] == "nlp"

    client.delete_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "deleted"
    active = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ACTIVE_ONLY)]
    deleted = [e.experiment_id for e in client.search_experiments(view_type=ViewType.DELETED_ONLY)]
    assert experiment_id not in active and experiment_id in deleted
    client.restore_experiment(experiment_id)
    assert client.get_experiment(experiment_id).lifecycle_stage == "active"

    with pytest.raises(MlflowException) as excinfo:
        client.get_experiment("987654321")
    assert error_code(excinfo) == "RESOURCE_DOES_NOT_EXIST"
    with pytest.raises(MlflowException) as excinfo:
        client.create_experiment("x" * 501)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"


def test_default_experiment_exists(client):
    default = client.get_experiment("0")
    assert default.name == "Default"


def test_search_experiments_by_name_and_tag(client):
    prefix = f"searchexp-{uuid.uuid4().hex[:8]}"
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"parity": str(i % 2)}) for i in range(5)]
    found = client.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.experiment_id for e in found] == list(reversed(ids))
    odd = client.search_experiments(filter_string=f"name LIKE '{prefix}%' AND tags.parity = '1'")
    assert sorted(e.experiment_id for e in odd) == sorted([ids[1], ids[3]])
    page = client.search_experiments(filter_string=f"name ILIKE '{prefix.upper()}%'", max_results=2)
    assert len(page) == 2 and page.token
    with pytest.raises(MlflowException) as excinfo:
        client.search_experiments(filter_string="name ~~ 'x'")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"


def test_runs_params_tags_and_history(client, experiment_id):
    run = client.create_run(experiment_id, run_name="first", tags={"kind": "unit"})
    run_id = run.info.run_id
    assert len(run_id) == 32
    assert run.info.status == "RUNNING"
    assert run.info.run_name == "first"
    assert run.info.artifact_uri == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"

    client.log_param(run_id, "alpha", "0.5")
    client.log_param(run_id, "alpha", "0.5")  # the same value again is fine
    with pytest.raises(MlflowException) as excinfo:
        client.log_param(run_id, "alpha", "0.7")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"

    client.set_tag(run_id, "note", "one")
    client.set_tag(run_id, "note", "two")
    client.set_tag(run_id, "gone", "soon")
    client.delete_tag(run_id, "gone")

    for step, value in [(2, 0.5), (0, 0.9), (1, 0.7), (2, 0.4)]:
        client.log_metric(run_id, "loss", value, timestamp=1000 + step, step=step)
    client.log_metric(run_id, "weird", float("nan"), timestamp=1, step=0)
    client.log_metric(run_id, "weird", float("inf"), timestamp=2, step=1)
    client.log_metric(run_id, "weird", float("-inf"), timestamp=3, step=2)

    fetched = client.get_run(run_id)
    assert fetched.data.params == {"alpha": "0.5"}
    assert fetched.data.tags["note"] == "two"
    assert "gone" not in fetched.data.tags
    assert fetched.data.metrics["loss"] == 0.4
    assert fetched.data.metrics["weird"] == float("-inf")

    history = client.get_metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.9), (1, 0.7), (2, 0.5), (2, 0.4)]
    weird = client.get_metric_history(run_id, "weird")
    assert math.isnan(weird[0].value) and weird[1].value == float("inf") and weird[2].value == float("-inf")

    client.set_terminated(run_id, status="FINISHED")
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.info.end_time >= finished.info.start_time


def test_long_history_pages_through(client, experiment_id):
    run_id = client.create_run(experiment_id).info.run_id
    metrics = [Metric("curve", float(i), 1000 + i, i) for i in range(3000)]
    for start in range(0, len(metrics), 1000):
        client.log_batch(run_id, metrics=metrics[start:start + 1000])
    history = client.get_metric_history(run_id, "curve")
    assert [m.step for m in history] == list(range(3000))
    # The client reads in pages; a request without max_results gets the whole history.
    more = [Metric("long", float(i), i, i) for i in range(30_000)]
    for start in range(0, len(more), 1000):
        client.log_batch(run_id, metrics=more[start:start + 1000])
    assert [m.step for m in client.get_metric_history(run_id, "long")] == list(range(30_000))
    url = f"{mlflow.get_tracking_uri()}/api/2.0/mlflow/metrics/get-history"
    response = requests.get(url, params={"run_id": run_id, "metric_key": "long"}, timeout=60).json()
    assert len(response["metrics"]) == 30_000 and "next_page_token" not in response
    page = requests.get(url, params={"run_id": run_id, "metric_key": "long", "max_results": 100}, timeout=60).json()
    assert len(page["metrics"]) == 100 and page["next_page_token"]


def test_batches_at_and_over_the_limits(client, experiment_id, tracking_uri):
    run_id = client.create_run(experiment_id).info.run_id
    client.log_batch(
        run_id,
        metrics=[Metric("m", float(i), i, i) for i in range(1000)],
    )
    client.log_batch(run_id, params=[Param(f"p{i}", str(i)) for i in range(100)])
    client.log_batch(run_id, tags=[RunTag(f"t{i}", str(i)) for i in range(100)])
    # The client splits large batches itself, so the server's limits are checked directly.
    url = f"{tracking_uri}/api/2.0/mlflow/runs/log-batch"
    metric = {"key": "m", "value": 1.0, "timestamp": 1, "step": 0}
    for body in [
        {"run_id": run_id, "metrics": [dict(metric, step=i) for i in range(1001)]},
        {"run_id": run_id, "params": [{"key": f"q{i}", "value": "v"} for i in range(101)]},
        {"run_id": run_id, "tags": [{"key": f"u{i}", "value": "v"} for i in range(101)]},
        {"run_id": run_id, "metrics": [dict(metric, step=i) for i in range(950)], "tags": [{"key": f"u{i}", "value": "v"} for i in range(51)]},
        {"run_id": run_id, "tags": [{"key": "huge", "value": "x" * (1 << 20)}]},
    ]:
        response = requests.post(url, json=body, timeout=30)
        assert response.status_code == 400, response.text
        assert response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.log_param(run_id, "big", "v" * 6001)
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    with pytest.raises(MlflowException) as excinfo:
        client.set_tag(run_id, "k" * 251, "v")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    # A refused batch changes nothing.
    run = client.get_run(run_id)
    assert len(run.data.params) == 100
    assert "q0" not in run.data.params


def test_search_runs_grammar(client, experiment_id):
    runs = []
    for i in range(6):
        run = client.create_run(experiment_id, run_name=f"trial-{i}", tags={"group": "even" if i % 2 == 0 else "odd", "my tag": f"v{i}"})
        client.log_metric(run.info.run_id, "rmse", 1.0 - i * 0.1, timestamp=1, step=0)
        client.log_param(run.info.run_id, "alpha", str(i / 10))
        runs.append(run.info.run_id)
    client.set_terminated(runs[5], status="FAILED")

    def ids(filter_string, **kwargs):
        return [r.info.run_id for r in client.search_runs([experiment_id], filter_string, **kwargs)]

    assert set(ids("metrics.rmse < 0.75")) == set(runs[3:])
    assert set(ids("metrics.rmse <= 0.7 and params.alpha = '0.3'")) == {runs[3]}
    assert set(ids("metrics.rmse >= 0.8")) == set(runs[:3])
    assert set(ids("metrics.rmse > 0.95")) == {runs[0]}
    assert set(ids("metrics.rmse != 1.0")) == set(runs[1:])
    assert set(ids("metrics.rmse = 1.0")) == {runs[0]}
    assert set(ids("params.alpha != '0.0'")) == set(runs[1:])
    assert set(ids("tags.group = 'odd'")) == {runs[1], runs[3], runs[5]}
    assert set(ids("tags.`my tag` LIKE 'v%'")) == set(runs)
    assert set(ids("tags.group ILIKE 'EV%'")) == {runs[0], runs[2], runs[4]}
    assert set(ids("attributes.run_name LIKE 'trial-_'")) == set(runs)
    assert set(ids("attributes.status = 'FAILED'")) == {runs[5]}
    assert set(ids(f"attributes.run_id IN ('{runs[0]}', '{runs[1]}')")) == {runs[0], runs[1]}
    assert set(ids(f"attributes.run_id NOT IN ('{runs[0]}')")) == set(runs[1:])

    ordered = ids("", order_by=["metrics.rmse ASC"])
    assert ordered == list(reversed(runs))
    ordered = ids("", order_by=["params.alpha DESC"])
    assert ordered == list(reversed(runs))

    # Pages of two cover every run exactly once.
    seen, token = [], None
    while True:
        page = client.search_runs([experiment_id], "", max_results=2, page_token=token, order_by=["attributes.run_name ASC"])
        seen.extend(r.info.run_id for r in page)
        token = page.token
        if not token:
            break
    assert seen == runs

    with pytest.raises(MlflowException) as excinfo:
        client.search_runs([experiment_id], "metrics.rmse <> 1")
    assert error_code(excinfo) == "INVALID_PARAMETER_VALUE"
    assert "<>" in str(excinfo.value) or ">" in str(excinfo.value)


def test_delete_restore_and_view_types(client, experiment_id):
    keep = client.create_run(experiment_id).info.run_id
    drop = client.create_run(experiment_id).info.run_id
    client.delete_run(drop)
    assert client.get_run(drop).info.lifecycle_stage == "deleted"
    active = {r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.ACTIVE_ONLY)}
    deleted = {r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.DELETED_ONLY)}
    everything = {r.info.run_id for r in client.search_runs([experiment_id], run_view_type=ViewType.ALL)}
    assert active == {keep} and deleted == {drop} and everything == {keep, drop}
    client.restore_run(drop)
    assert client.get_run(drop).info.lifecycle_stage == "active"


def test_fluent_api_and_resuming_a_run(tracking_uri, client):
    name = f"fluent-{uuid.uuid4().hex[:8]}"
    mlflow.set_experiment(name)
    with mlflow.start_run(run_name="fluent") as run:
        mlflow.log_param("lr", 0.01)
        mlflow.log_metric("acc", 0.5, step=1)
        mlflow.log_metrics({"acc": 0.75, "loss": 0.2}, step=2)
        mlflow.set_tag("stage", "test")
        run_id = run.info.run_id
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.metrics == {"acc": 0.75, "loss": 0.2}

    # MLFLOW_RUN_ID makes start_run() resume an existing run, as drover's runs do.
    existing = client.create_run(finished.info.experiment_id).info.run_id
    os.environ["MLFLOW_RUN_ID"] = existing
    try:
        with mlflow.start_run() as resumed:
            assert resumed.info.run_id == existing
            mlflow.log_metric("resumed", 1.0)
    finally:
        os.environ.pop("MLFLOW_RUN_ID", None)
    assert client.get_run(existing).data.metrics["resumed"] == 1.0


def test_log_inputs(client, experiment_id):
    from mlflow.entities import Dataset, DatasetInput, InputTag

    run_id = client.create_run(experiment_id).info.run_id
    dataset = Dataset(name="train", digest="abc123", source_type="local", source="/data/train.csv")
    client.log_inputs(run_id, [DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")])])
    inputs = client.get_run(run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("train", "abc123")]


def test_artifacts_round_trip(client, experiment_id, tmp_path):
    run_id = client.create_run(experiment_id).info.run_id
    payload = bytes(range(256)) * 4096  # 1 MiB, every byte value
    (tmp_path / "blob.bin").write_bytes(payload)
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "notes.txt").write_text("hello artifacts")
    client.log_artifact(run_id, str(tmp_path / "blob.bin"))
    client.log_artifacts(run_id, str(tmp_path / "nested"), artifact_path="docs")

    listed = {(f.path, f.is_dir) for f in client.list_artifacts(run_id)}
    assert listed == {("blob.bin", False), ("docs", True)}
    assert [f.path for f in client.list_artifacts(run_id, "docs")] == ["docs/notes.txt"]

    out = tmp_path / "out"
    out.mkdir()
    downloaded = client.download_artifacts(run_id, "blob.bin", str(out))
    with open(downloaded, "rb") as handle:
        assert handle.read() == payload
    downloaded = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="docs", dst_path=str(out))
    with open(os.path.join(downloaded, "notes.txt")) as handle:
        assert handle.read() == "hello artifacts"


HOSTILE_PATHS = [
    "../../../escaped.txt",
    "%2e%2e/%2e%2e/%2e%2e/escaped.txt",
    "%252e%252e/%252e%252e/escaped.txt",
    "..%5c..%5cescaped.txt",
    "a;b/escaped.txt",
    "a%23b/escaped.txt",
    "%2Ftmp%2Fescaped.txt",
    "file:%2F%2F%2Ftmp%2Fescaped.txt",
    "a%00b/escaped.txt",
]


def test_hostile_artifact_paths_are_refused(tracking_uri):
    import http.client
    from urllib.parse import urlparse

    data_dir = os.environ["DROVER_DATA_DIR"]
    target = urlparse(tracking_uri)
    before = sorted(os.listdir(data_dir))
    for hostile in HOSTILE_PATHS:
        for method, body in [("PUT", b"owned"), ("GET", None), ("DELETE", None)]:
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
            connection.request(method, f"/api/2.0/mlflow-artifacts/artifacts/{hostile}", body=body)
            response = connection.getresponse()
            response.read()
            assert response.status in (400, 404), f"{method} {hostile}: {response.status}"
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        connection.request("GET", f"/api/2.0/mlflow-artifacts/artifacts?path={hostile}")
        response = connection.getresponse()
        response.read()
        assert response.status in (400, 404), f"list {hostile}: {response.status}"
    assert sorted(os.listdir(data_dir)) == before
    for root, _dirs, files in os.walk(os.path.dirname(data_dir)):
        assert "escaped.txt" not in files, f"a hostile upload landed in {root}"
    assert not os.path.exists("/tmp/escaped.txt")
