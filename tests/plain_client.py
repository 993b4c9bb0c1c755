"""What a colleague without the bridge sees: plain MLflow over HTTPS with a bearer token.

Run as a script under either venv (MLflow 2.x or 3.x): tracking calls go through MLflow's stock
REST store; the ``azureml://`` artifact URIs are read by the installed artifact plugin with the
process's own Azure credential (as azureml-mlflow would). Prints one JSON line.
"""

from __future__ import annotations

import json
import sys


def main(run_id: str, model_name: str, registered: str, version: str) -> None:
    import mlflow
    import numpy as np
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    features = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]])
    import pandas as pd

    frame = pd.DataFrame(
        features,
        columns=["sepal length (cm)", "sepal width (cm)", "petal length (cm)", "petal width (cm)"],
    )
    result = {"mlflow": mlflow.__version__}
    run = client.get_run(run_id)
    result["store"] = type(client._tracking_client.store).__name__
    result["run_artifacts"] = sorted(
        (f.path, f.is_dir) for f in client.list_artifacts(run_id) if not f.path.startswith(".")
    )
    # By the run's artifact URI: MLflow 3's runs:/ listing of a sub-path also asks the server's
    # logged-model search, which Azure ML does not serve (404) — with or without the bridge.
    listed = mlflow.artifacts.list_artifacts(artifact_uri=f"{run.info.artifact_uri}/{model_name}")
    result["model_files"] = sorted(f.path.rsplit("/", 1)[-1] for f in listed)
    by_run = mlflow.pyfunc.load_model(f"runs:/{run_id}/{model_name}")
    result["runs_predict"] = [int(x) for x in by_run.predict(frame)]
    info = mlflow.models.get_model_info(f"runs:/{run_id}/{model_name}")
    result["info_run_id"] = info.run_id
    result["info_signature"] = info.signature is not None
    result["info_model_uri"] = info.model_uri
    by_registry = mlflow.pyfunc.load_model(f"models:/{registered}/{version}")
    result["models_predict"] = [int(x) for x in by_registry.predict(frame)]
    result["artifact_uri"] = run.info.artifact_uri
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:])
