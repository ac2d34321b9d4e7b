"""Fixtures for testing drover's MLflow REST API with the official `mlflow` client.

The scheduler under test is given by MLFLOW_TRACKING_URI (set by the Rust test that starts it).
"""

import os
import uuid

# The client must not try to reach anything but the scheduler under test.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"

import mlflow
import pytest
from mlflow.tracking import MlflowClient


@pytest.fixture(scope="session")
def tracking_uri():
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        pytest.fail("MLFLOW_TRACKING_URI must point at a drover scheduler")
    mlflow.set_tracking_uri(uri)
    return uri


@pytest.fixture()
def client(tracking_uri):
    return MlflowClient(tracking_uri)


@pytest.fixture()
def experiment_id(client):
    return client.create_experiment(f"exp-{uuid.uuid4().hex[:12]}")
