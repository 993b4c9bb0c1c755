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
    # MLflow 3.0-3.8's UI picks the experiment's view from this tag (later ones from the URL's
    # workflowType, see links.py): a training experiment opens on its runs, not on GenAI traces.
    mlflow.set_experiment_tag("mlflow.experimentKind", "custom_model_development")
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
        best_model = LogisticRegression(C=best[1], max_iter=500).fit(x_train, y_train)
        mlflow.log_figure(_confusion_figure(best_model, x_test, y_test), "confusion_matrix.png")
        _log_model(mlflow, best_model, x_test[:5])
    return {"experiment_id": parent.info.experiment_id, "run_id": parent.info.run_id, "best": best}


def _confusion_figure(model: Any, x: Any, y: Any) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from sklearn.metrics import ConfusionMatrixDisplay

    display = ConfusionMatrixDisplay.from_estimator(model, x, y, colorbar=False)
    display.ax_.set_title("best candidate, test split")
    return display.figure_


def _log_model(mlflow: Any, model: Any, example: Any) -> None:
    from mlflow.models import infer_signature

    signature = infer_signature(example, model.predict(example))
    major = int(mlflow.__version__.split(".", 1)[0])
    # MLflow 3 names a model with name=; MLflow 2 with artifact_path= (3 still accepts it, warning).
    where = {"name": "model"} if major >= 3 else {"artifact_path": "model"}
    mlflow.sklearn.log_model(model, signature=signature, input_example=example, **where)


def _loss_curve(model: Any, x: Any, y: Any) -> list[float]:
    from sklearn.metrics import log_loss

    # A stand-in learning curve: loss of the fitted model on growing slices of the data.
    return [
        float(log_loss(y[:n], model.predict_proba(x[:n]), labels=model.classes_))
        for n in range(30, len(y) + 1, 15)
    ]


def run_demo(state_dir: str, serve: bool | None = None) -> int:
    from spark_aml_bridge import bridge as bridges
    from spark_aml_bridge.emulator.process import start_emulator

    state = Path(state_dir).resolve()
    if serve is None:
        serve = sys.stdin.isatty()
    if not serve:
        # The UI goes away with the demo: no "View run" links to it (MLflow >= 3 honours this).
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    print(f"starting the workspace emulator (state in {state}) ...")
    emulator = start_emulator(str(state))
    try:
        info = emulator.info
        os.environ.update(info["env"])
        bridge = bridges.connect()
        print(f"connected: {bridge}")
        result = train_and_track()
        experiment_id, run_id = result["experiment_id"], result["run_id"]
        print(f"best accuracy {result['best'][0]:.3f} at C={result['best'][1]}")
        print(f"runs are in workspace {bridge.workspace}")
        print(f"  tracking URI: {bridge.tracking_uri}")
        print(f"  experiment id {experiment_id}, parent run id {run_id}")
        run_url, experiment_url = bridge.run_url(run_id), bridge.experiment_url(experiment_id)
        bridges.disconnect()
        if not serve:
            # Never print an address that is about to go dead.
            print(
                "the emulator stops now, and its MLflow UI with it; to browse these runs, run "
                "`spark-aml-bridge demo --serve` (it keeps the UI up until Ctrl-C)"
            )
            return 0
        print(f"MLflow UI of the workspace emulator: {info['ui_url']}")
        print(f"  this run:        {run_url}")
        print(f"  this experiment: {experiment_url}")
        print("the UI stays up until you press Ctrl-C", flush=True)
        while emulator.running():
            time.sleep(1)
        return 0
    except KeyboardInterrupt:
        return 0
    finally:
        emulator.stop()
