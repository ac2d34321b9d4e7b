"""Logged models and the model registry, through the official client with scikit-learn."""

import concurrent.futures
import uuid

import mlflow
import numpy as np
import pytest
import requests
from mlflow.exceptions import MlflowException
from sklearn.linear_model import ElasticNet, LogisticRegression


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def training_data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 3))
    y = X @ np.array([0.5, -1.0, 2.0]) + rng.normal(scale=0.1, size=60)
    return X, y


def fitted_model(alpha=0.5):
    X, y = training_data()
    return ElasticNet(alpha=alpha, l1_ratio=0.5, random_state=42).fit(X, y), X


def test_log_model_load_it_back_and_register_it(tracking_uri, client, experiment_id):
    model, X = fitted_model()
    name = unique("ElasticnetWineModel")
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_param("alpha", 0.5)
        mlflow.log_metric("rmse", 0.25)
        info = mlflow.sklearn.log_model(
            model, name="model", input_example=X[:2], registered_model_name=name
        )
    expected = model.predict(X[:5])

    # Loaded from the logged model, from the run, and from the registry.
    for uri in (info.model_uri, f"runs:/{run.info.run_id}/model", f"models:/{name}/1"):
        loaded = mlflow.sklearn.load_model(uri)
        np.testing.assert_allclose(loaded.predict(X[:5]), expected)

    logged = client.get_logged_model(info.model_id)
    assert logged.status.to_int() == 2  # LOGGED_MODEL_READY
    assert logged.source_run_id == run.info.run_id
    assert logged.artifact_location.endswith(f"/models/{info.model_id}/artifacts")
    assert logged.params["alpha"] == "0.5"
    # The run's metric was linked to the model when it was logged.
    assert [m.key for m in logged.metrics] == ["rmse"]

    # The run lists the model among its outputs.
    fetched = client.get_run(run.info.run_id)
    assert [output.model_id for output in fetched.outputs.model_outputs] == [info.model_id]

    version = client.get_model_version(name, "1")
    assert version.run_id == run.info.run_id
    assert version.source == f"models:/{info.model_id}"
    assert version.status == "READY"
    assert client.get_model_version_download_uri(name, "1") == logged.artifact_location


def test_versions_aliases_and_deletion(tracking_uri, client, experiment_id):
    name = unique("registry")
    predictions = {}
    for alpha in (0.1, 0.9):
        model, X = fitted_model(alpha)
        with mlflow.start_run(experiment_id=experiment_id):
            mlflow.sklearn.log_model(model, name="model", registered_model_name=name)
        predictions[alpha] = model.predict(X[:3])
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
    assert versions == [1, 2]

    client.set_registered_model_alias(name, "champion", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "1"
    X, _ = training_data()
    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(loaded.predict(X[:3]), predictions[0.1])

    # Moving the alias changes what the URI loads.
    client.set_registered_model_alias(name, "champion", "2")
    loaded = mlflow.sklearn.load_model(f"models:/{name}@champion")
    np.testing.assert_allclose(loaded.predict(X[:3]), predictions[0.9])
    assert client.get_registered_model(name).aliases == {"champion": "2"}

    client.delete_registered_model_alias(name, "champion")
    with pytest.raises(MlflowException, match="alias champion not found"):
        client.get_model_version_by_alias(name, "champion")

    # Deleting an aliased version drops its aliases, as MLflow does; numbers are not reused.
    client.set_registered_model_alias(name, "staging", "2")
    client.delete_model_version(name, "2")
    assert client.get_registered_model(name).aliases == {}
    with pytest.raises(MlflowException, match="not found"):
        client.get_model_version(name, "2")
    model, _ = fitted_model(0.3)
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(model, name="model")
    again = mlflow.register_model(info.model_uri, name)
    assert again.version == "3"

    for bad in ("latest", "v3", "has space"):
        with pytest.raises(MlflowException, match="(?i)invalid alias"):
            client.set_registered_model_alias(name, bad, "1")
        # The scheduler refuses them too, whatever the client checks first.
        answer = requests.post(
            f"{tracking_uri}/api/2.0/mlflow/registered-models/alias",
            json={"name": name, "alias": bad, "version": "1"},
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"

    latest = client.get_latest_versions(name)
    assert [v.version for v in latest] == ["3"]
    client.transition_model_version_stage(name, "1", "Production")
    assert client.get_model_version(name, "1").current_stage == "Production"

    client.rename_registered_model(name, name + "-renamed")
    assert client.get_model_version(name + "-renamed", "3").version == "3"
    client.delete_registered_model(name + "-renamed")
    with pytest.raises(MlflowException, match="not found"):
        client.get_registered_model(name + "-renamed")


def test_concurrent_registrations_get_distinct_versions(tracking_uri, client, experiment_id):
    name = unique("concurrent")
    model, _ = fitted_model()
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.sklearn.log_model(model, name="model")

    # Each call also creates the registered model unless another got there first.
    def register(_):
        return mlflow.register_model(info.model_uri, name).version

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(register, range(8)))
    assert sorted(int(v) for v in versions) == list(range(1, 9))


def test_autolog_logs_params_training_metrics_and_the_model(tracking_uri, client, experiment_id):
    mlflow.set_experiment(experiment_id=experiment_id)
    mlflow.sklearn.autolog()
    try:
        X, y = training_data()
        LogisticRegression(max_iter=200).fit(X, y > 0)
    finally:
        mlflow.sklearn.autolog(disable=True)
    run = mlflow.last_active_run()
    fetched = client.get_run(run.info.run_id)
    assert fetched.data.params["max_iter"] == "200"
    assert "training_accuracy_score" in fetched.data.metrics
    (model,) = client.search_logged_models(
        experiment_ids=[experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'"
    )
    assert model.params["max_iter"] == "200"
    linked = {metric.key: metric for metric in model.metrics}
    assert linked["training_accuracy_score"].dataset_name == "dataset"
    loaded = mlflow.sklearn.load_model(f"models:/{model.model_id}")
    assert list(loaded.predict(X[:4])) == list(LogisticRegression(max_iter=200).fit(X, y > 0).predict(X[:4]))


def test_searches_filter_and_order(tracking_uri, client, experiment_id):
    prefix = unique("search")
    for index in range(3):
        client.create_registered_model(f"{prefix}-{index}", tags={"team": "a" if index else "b"})
    found = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'")
    assert [m.name for m in found] == [f"{prefix}-0", f"{prefix}-1", f"{prefix}-2"]
    found = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}-%' AND tags.team = 'a'", order_by=["name DESC"]
    )
    assert [m.name for m in found] == [f"{prefix}-2", f"{prefix}-1"]
    page = client.search_registered_models(filter_string=f"name LIKE '{prefix}-%'", max_results=2)
    assert len(page) == 2 and page.token
    rest = client.search_registered_models(
        filter_string=f"name LIKE '{prefix}-%'", max_results=2, page_token=page.token
    )
    assert [m.name for m in rest] == [f"{prefix}-2"]
    with pytest.raises(MlflowException, match="not 'bogus'"):
        client.search_registered_models(filter_string="bogus = 'x'")

    scores = {}
    for alpha in (0.2, 0.6):
        model, _ = fitted_model(alpha)
        with mlflow.start_run(experiment_id=experiment_id):
            info = mlflow.sklearn.log_model(model, name=f"net{int(alpha * 10)}", model_type="regressor")
            mlflow.log_metric("score", alpha, model_id=info.model_id)
        scores[info.model_id] = alpha
    found = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string="metrics.score > 0.3 AND model_type = 'regressor'",
        output_format="list",
    )
    assert [m.model_id for m in found] == [k for k, v in scores.items() if v > 0.3]
    ordered = mlflow.search_logged_models(
        experiment_ids=[experiment_id],
        order_by=[{"field_name": "metrics.score", "ascending": False}],
        output_format="list",
    )
    assert [m.model_id for m in ordered][:2] == sorted(scores, key=scores.get, reverse=True)


def test_hostile_names_and_sources_are_refused(tracking_uri, client, experiment_id):
    for bad in ("a/b", "x:y", "..", "../up", "nul\0byte", " "):
        with pytest.raises(MlflowException):
            client.create_registered_model(bad)
    name = unique("sources")
    client.create_registered_model(name)
    for source in (
        "/etc/passwd",
        "s3://bucket/model",
        "file:///etc",
        "mlflow-artifacts:/../../etc",
        "mlflow-artifacts:/1/not-a-run/artifacts/model",
        "runs:/" + "0" * 32 + "/model",
        "models:/m-" + "0" * 32,
    ):
        with pytest.raises(MlflowException):
            client.create_model_version(name, source)
    assert client.search_model_versions(f"name='{name}'") == []
    with pytest.raises(MlflowException, match="invalid logged model name"):
        client.create_logged_model(experiment_id=experiment_id, name="a/b")
