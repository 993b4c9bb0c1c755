"""Model and search benchmarks: the bridge vs a plain MLflow server, side by side in one run.

- ``log_model`` + ``load_model`` of a small scikit-learn model and of a ~100 MB pyfunc model
  (one random-bytes artifact), inside a run: the bridge (emulator: AML's run-history artifact
  service + blob endpoint, models kept in the run's artifacts) vs a plain ``mlflow server
  --workers 1 --serve-artifacts`` (sqlite). Rounds alternate which side goes first. Time ratio.
- The raw storage endpoints, without MLflow or the bridge: one PUT and one GET of the big file
  to the emulator's blob endpoint (SAS URLs from its run-history service, HTTPS) and to the
  plain server's artifact proxy (HTTP). Their ratio is the part of the model ratio that is the
  emulator's storage, not the bridge.
- A search Azure ML refuses — ``search_runs(order_by=["metrics.loss ASC"], max_results=1)`` over
  5,000 runs — answered client side by the bridge vs natively by the plain server: time and
  HTTP requests (the bridge's workspace pages; the plain server's one call), cold and paged.

Usage: python benchmarks/bench_models.py [--model-rounds 3] [--big-mb 100] [--runs 5000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_artifacts import Side, _timed, plain_mlflow_server  # noqa: E402

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
MiB = 1024 * 1024


class Blob:
    """A pyfunc model whose weight is one big file (stands for a ~100 MB model)."""

    @staticmethod
    def python_model():
        import mlflow

        class BigModel(mlflow.pyfunc.PythonModel):
            def load_context(self, context):
                self.size = os.path.getsize(context.artifacts["weights"])

            def predict(self, context, model_input, params=None):
                return [self.size] * len(model_input)

        return BigModel()


def _models(args: argparse.Namespace, sides: list[Side], work: Path) -> dict:
    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    mlflow_3 = int(mlflow.__version__.split(".")[0]) >= 3
    features, labels = load_iris(return_X_y=True, as_frame=True)
    model = LogisticRegression(max_iter=300).fit(features, labels)
    signature = infer_signature(features, model.predict(features))
    expected = model.predict(features)
    weights = work / "w.bin"
    chunk = os.urandom(MiB)
    with weights.open("wb") as out:
        for i in range(args.big_mb):
            out.write(chunk[i:] + chunk[:i])
    frame = pd.DataFrame({"x": [1.0, 2.0]})

    def name(value: str) -> dict:
        return {"name": value} if mlflow_3 else {"artifact_path": value}

    extra = {"serialization_format": "cloudpickle"} if mlflow_3 else {}
    parts: dict[str, dict[str, list[float]]] = {}

    def round_trip(kind: str):
        def action(side: Side) -> float:
            side.activate()
            experiment = mlflow.set_experiment(f"bench-models-{kind}")
            started = time.perf_counter()
            with mlflow.start_run(experiment_id=experiment.experiment_id):
                if kind == "sklearn":
                    info = mlflow.sklearn.log_model(
                        model,
                        signature=signature,
                        input_example=features.head(3),
                        **name("model"),
                        **extra,
                    )
                else:
                    info = mlflow.pyfunc.log_model(
                        python_model=Blob.python_model(),
                        artifacts={"weights": str(weights)},
                        pip_requirements=["mlflow"],
                        **name("big"),
                    )
            logged = time.perf_counter()
            loaded = mlflow.pyfunc.load_model(info.model_uri)
            done = time.perf_counter()
            if kind == "sklearn":
                assert np.array_equal(loaded.predict(features), expected)
            else:
                assert list(loaded.predict(frame)) == [args.big_mb * MiB] * 2
            split = parts.setdefault(kind, {"log": [], "load": []})
            split["log"].append((side.name, logged - started))
            split["load"].append((side.name, done - logged))
            return done - started

        return action

    for side in sides:  # warm imports (flavors, model validation) once
        round_trip("sklearn")(side)
    parts.clear()
    result = {}
    for kind in ("sklearn", "big"):
        times = _timed(sides, args.model_rounds, round_trip(kind))
        medians = {k: statistics.median(v) for k, v in times.items()}
        result[kind] = {
            "rounds": args.model_rounds,
            "median_s": {k: round(v, 3) for k, v in medians.items()},
            "time_ratio_bridge_over_plain": round(medians["bridge"] / medians["plain"], 2),
            "median_s_log_model": {
                s.name: round(statistics.median(t for n, t in parts[kind]["log"] if n == s.name), 3)
                for s in sides
            },
            "median_s_load_model": {
                s.name: round(
                    statistics.median(t for n, t in parts[kind]["load"] if n == s.name), 3
                )
                for s in sides
            },
            "seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        }
    result["big"]["size_mb"] = args.big_mb
    return result


def _raw_endpoints(args: argparse.Namespace, info: dict, plain_url: str, weights: Path) -> dict:
    """The same bytes through each side's storage endpoint, no MLflow and no bridge: one PUT and
    one GET of the big file (the emulator: a write/read SAS URL from its run-history service and
    a single Put Blob over HTTPS; the plain server: its artifact proxy over HTTP). What this
    costs more on the emulator is the emulator's, not the bridge's."""
    import uuid

    import requests
    from mlflow.tracking import MlflowClient

    token = requests.post(
        f"{info['authority']}/{info['tenant_id']}/oauth2/v2.0/token",
        data={
            "grant_type": "client_credentials",
            "client_id": info["client_id"],
            "client_secret": info["client_secret"],
            "scope": "https://management.azure.com/.default",
        },
        verify=info["ca_bundle"],
        timeout=30,
    ).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    run = MlflowClient().create_run(mlflow_experiment("bench-raw"))
    base = (
        f"{info['history_url']}/experimentids/{run.info.experiment_id}/runs/{run.info.run_id}"
        "/artifacts"
    )
    size = weights.stat().st_size
    times: dict[str, dict[str, list[float]]] = {"put": {}, "get": {}}

    def transfer(side: str, put_url: str, get_url: Callable[[], str], verify: Any) -> None:
        started = time.perf_counter()
        with weights.open("rb") as body:
            answer = requests.put(
                put_url,
                data=body,
                headers={"x-ms-blob-type": "BlockBlob", "Content-Length": str(size)},
                verify=verify,
                timeout=600,
            )
        answer.raise_for_status()
        put = time.perf_counter() - started
        started = time.perf_counter()
        with requests.get(get_url(), stream=True, verify=verify, timeout=600) as reply:
            reply.raise_for_status()
            got = sum(len(chunk) for chunk in reply.iter_content(1024 * 1024))
        assert got == size
        times["put"].setdefault(side, []).append(put)
        times["get"].setdefault(side, []).append(time.perf_counter() - started)

    for r in range(args.model_rounds):
        for side in ("emulator", "plain") if r % 2 == 0 else ("plain", "emulator"):
            name = f"raw-{uuid.uuid4().hex[:8]}.bin"
            if side == "plain":
                url = f"{plain_url}/api/2.0/mlflow-artifacts/artifacts/raw/{name}"
                transfer(side, url, lambda url=url: url, True)
                continue
            registered = requests.post(
                base + "/batch/metadata",
                json={"paths": [{"path": name}]},
                headers=auth,
                verify=info["ca_bundle"],
                timeout=60,
            ).json()
            put_url = registered["artifactContentInformation"][name]["contentUri"]

            def read_url(name: str = name) -> str:
                return requests.get(
                    base + "/contentinfo",
                    params={"path": name},
                    headers=auth,
                    verify=info["ca_bundle"],
                    timeout=60,
                ).json()["contentUri"]

            transfer(side, put_url, read_url, info["ca_bundle"])
    result: dict[str, Any] = {"size_mb": args.big_mb}
    for kind, by_side in times.items():
        medians = {k: round(statistics.median(v), 3) for k, v in by_side.items()}
        result[f"{kind}_median_s"] = medians
        ratio = medians["emulator"] / medians["plain"]
        result[f"{kind}_ratio_emulator_over_plain"] = round(ratio, 2)
    return result


def mlflow_experiment(name: str) -> str:
    import mlflow

    return mlflow.set_experiment(name).experiment_id


def _search(args: argparse.Namespace, sides: list[Side]) -> dict:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    result: dict = {"runs": args.runs}
    for side in sides:
        side.activate()
        client = MlflowClient(side.tracking_uri)
        experiment_id = client.create_experiment(f"bench-search-{os.getpid()}-{side.name}")
        started = time.perf_counter()
        for i in range(args.runs):
            run = client.create_run(experiment_id, start_time=1_700_000_000_000 + i)
            loss = ((i * 7919) % args.runs) / args.runs
            client.log_batch(run.info.run_id, metrics=[Metric("loss", loss, 0, 0)])
        filled = time.perf_counter() - started
        store = client._tracking_client.store  # only to read the bridge's page counter
        counter = getattr(store, "_client_side_search", None)
        before = counter().requests if counter else 0
        started = time.perf_counter()
        best = client.search_runs([experiment_id], order_by=["metrics.loss ASC"], max_results=1)
        cold = time.perf_counter() - started
        requests_cold = (counter().requests - before) if counter else 1
        assert best[0].data.metrics["loss"] == 0.0
        # Paging through all runs, 1,000 at a time, in metric order.
        before = counter().requests if counter else 0
        started = time.perf_counter()
        token, pages, seen = None, 0, 0
        while True:
            page = client.search_runs(
                [experiment_id], order_by=["metrics.loss ASC"], max_results=1000, page_token=token
            )
            pages += 1
            seen += len(page)
            token = page.token
            if not token:
                break
        paged = time.perf_counter() - started
        assert seen == args.runs
        requests_paged = (counter().requests - before) if counter else pages
        result[side.name] = {
            "log_runs_s": round(filled, 1),
            "best_run_s": round(cold, 3),
            "best_run_requests": requests_cold,
            "page_all_s": round(paged, 3),
            "page_all_requests": requests_paged,
        }
    result["best_run_time_ratio_bridge_over_plain"] = round(
        result["bridge"]["best_run_s"] / result["plain"]["best_run_s"], 2
    )
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-rounds", type=int, default=3)
    parser.add_argument("--big-mb", type=int, default=100)
    parser.add_argument("--runs", type=int, default=5000)
    args = parser.parse_args()

    import mlflow

    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    work = Path(tempfile.mkdtemp(prefix="bench-models-"))
    try:
        # MLflow prints run links on stdout: only the JSON result goes there.
        with (
            contextlib.redirect_stdout(sys.stderr),
            start_emulator(work / "emulator") as emulator,
            plain_mlflow_server(work / "plain") as plain_url,
        ):
            os.environ.update(emulator.info["env"])
            bridge = spark_aml_bridge.connect()
            sides = [
                Side(
                    "bridge",
                    bridge.tracking_uri,
                    lambda: mlflow.set_tracking_uri(bridge.tracking_uri),
                ),
                Side("plain", plain_url, lambda: mlflow.set_tracking_uri(plain_url)),
            ]
            result = {"mlflow": mlflow.__version__, "models": _models(args, sides, work)}
            sides[0].activate()
            result["raw_endpoints"] = _raw_endpoints(args, emulator.info, plain_url, work / "w.bin")
            result["client_side_search"] = _search(args, sides)
            spark_aml_bridge.disconnect()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
