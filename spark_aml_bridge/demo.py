"""``spark-aml-bridge demo``: the emulator plus a small training tracked through ``connect()``."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any


def train_and_track(experiment: str = "spark-aml-bridge-demo") -> dict[str, Any]:
    """A small grid search, one nested run per candidate, through unchanged MLflow code."""
    import mlflow
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    features, labels = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, random_state=7
    )
    mlflow.set_experiment(experiment)
    best: tuple[float, float] = (-1.0, 0.0)
    with mlflow.start_run(run_name="grid-search") as parent:
        mlflow.set_tag("demo", "spark-aml-bridge")
        for c in (0.01, 0.1, 1.0, 10.0):
            with mlflow.start_run(run_name=f"C={c}", nested=True):
                model = LogisticRegression(C=c, max_iter=500).fit(x_train, y_train)
                predicted = model.predict(x_test)
                accuracy = accuracy_score(y_test, predicted)
                mlflow.log_params({"C": c, "max_iter": 500})
                mlflow.log_metrics(
                    {"accuracy": accuracy, "f1_macro": f1_score(y_test, predicted, average="macro")}
                )
                for step, loss in enumerate(_loss_curve(model, x_train, y_train)):
                    mlflow.log_metric("train_log_loss", loss, step=step)
                best = max(best, (accuracy, c))
        mlflow.log_metric("best_accuracy", best[0])
        mlflow.log_param("best_C", best[1])
    return {"experiment_id": parent.info.experiment_id, "run_id": parent.info.run_id, "best": best}


def _loss_curve(model: Any, x: Any, y: Any) -> list[float]:
    from sklearn.metrics import log_loss

    # A stand-in learning curve: loss of the fitted model on growing slices of the data.
    return [
        float(log_loss(y[:n], model.predict_proba(x[:n]), labels=model.classes_))
        for n in range(30, len(y) + 1, 15)
    ]


def run_demo(state_dir: str, serve: bool | None = None) -> int:
    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    state = Path(state_dir).resolve()
    print(f"starting the workspace emulator (state in {state}) ...")
    emulator = start_emulator(str(state))
    try:
        info = emulator.info
        os.environ.update(info["env"])
        bridge = spark_aml_bridge.connect()
        print(f"connected: {bridge}")
        result = train_and_track()
        experiment_id, run_id = result["experiment_id"], result["run_id"]
        print(f"best accuracy {result['best'][0]:.3f} at C={result['best'][1]}")
        print(f"runs are in workspace {bridge.workspace}")
        print(f"  tracking URI: {bridge.tracking_uri}")
        print(f"  experiment id {experiment_id}, parent run id {run_id}")
        ui = info["ui_url"].rstrip("/")
        print(f"MLflow UI: {ui}/#/experiments/{experiment_id}/runs/{run_id}")
        spark_aml_bridge.disconnect()
        if serve is None:
            serve = sys.stdin.isatty()
        if serve:
            print("the emulator keeps running for the UI; press Ctrl-C to stop")
            while emulator.running():
                time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        emulator.stop()
