"""Artifact and model benchmarks: the bridge vs a plain MLflow server, side by side in one run.

- Upload of one 200 MB file and of 1,000 files of 10 KB: the bridge (the ``azureml`` artifact
  repository against the emulator: AML's run-history service over HTTPS, then the blob endpoint
  with SAS URLs) vs ``mlflow-artifacts`` proxied uploads to a plain local ``mlflow server
  --workers 1 --serve-artifacts`` (sqlite backend), with the same data. Throughput ratio.
- ``log_model`` + ``load_model`` round trip of a small scikit-learn model, bridge vs plain server.

Rounds alternate which side goes first; every round uses a new run (AML artifacts are
write-once). Everything listens on 127.0.0.1; the servers and temp dirs are removed at the end.

Usage: python benchmarks/bench_artifacts.py [--big-mb 200] [--files 1000] [--file-kb 10]
                                            [--rounds 2] [--model-rounds 5]
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

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ["DO_NOT_TRACK"] = "true"
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))  # shared helpers
from plain_server import plain_mlflow_server  # noqa: E402

MiB = 1024 * 1024


def _make_data(directory: Path, big_mb: int, files: int, file_kb: int) -> tuple[Path, Path]:
    big = directory / "big.bin"
    chunk = os.urandom(MiB)
    with big.open("wb") as out:
        for i in range(big_mb):
            out.write(chunk[i:] + chunk[:i])  # no two MiB alike
    small = directory / "small"
    small.mkdir()
    for i in range(files):
        (small / f"f{i:04d}.bin").write_bytes(os.urandom(file_kb * 1024))
    return big, small


class Side:
    """One tracking server: a name, its tracking URI, and how to make it current."""

    def __init__(self, name: str, tracking_uri: str, activate: Callable[[], None]) -> None:
        self.name = name
        self.tracking_uri = tracking_uri
        self.activate = activate
        self.experiment_id: str | None = None

    def new_run(self, client_factory) -> tuple[object, str]:
        self.activate()
        client = client_factory(self.tracking_uri)
        if self.experiment_id is None:
            import mlflow

            self.experiment_id = mlflow.set_experiment("bench-artifacts").experiment_id
        return client, client.create_run(self.experiment_id).info.run_id


def _timed(sides: list[Side], rounds: int, action) -> dict[str, list[float]]:
    """`action(side)` returns seconds; rounds alternate which side goes first."""
    times: dict[str, list[float]] = {side.name: [] for side in sides}
    for r in range(rounds):
        order = sides if r % 2 == 0 else list(reversed(sides))
        for side in order:
            times[side.name].append(action(side))
    return times


def _measure(args: argparse.Namespace, work: Path) -> dict[str, dict]:
    """Seconds per round: {"big"|"small"|"model"|"log"|"load": {side: [...]}}."""
    import mlflow
    import numpy as np
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    import spark_aml_bridge
    from spark_aml_bridge.emulator.process import start_emulator

    mlflow_3 = int(mlflow.__version__.split(".")[0]) >= 3
    big, small = _make_data(work, args.big_mb, args.files, args.file_kb)
    with (
        start_emulator(work / "emulator") as emulator,
        plain_mlflow_server(work / "plain") as plain_url,
    ):
        os.environ.update(emulator.info["env"])
        bridge = spark_aml_bridge.connect()
        sides = [
            Side(
                "bridge", bridge.tracking_uri, lambda: mlflow.set_tracking_uri(bridge.tracking_uri)
            ),
            Side("plain", plain_url, lambda: mlflow.set_tracking_uri(plain_url)),
        ]

        def upload(source: Path, directory: bool) -> Callable[[Side], float]:
            def action(side: Side) -> float:
                client, run_id = side.new_run(lambda uri: MlflowClient(tracking_uri=uri))
                client.log_text(run_id, "warm", "warm.txt")  # connections and token warm
                started = time.perf_counter()
                if directory:
                    client.log_artifacts(run_id, str(source), "data")
                else:
                    client.log_artifact(run_id, str(source), "data")
                elapsed = time.perf_counter() - started
                client.set_terminated(run_id)
                return elapsed

            return action

        measured = {
            "big": _timed(sides, args.rounds, upload(big, directory=False)),
            "small": _timed(sides, args.rounds, upload(small, directory=True)),
            "log": {side.name: [] for side in sides},
            "load": {side.name: [] for side in sides},
        }

        features, labels = load_iris(return_X_y=True, as_frame=True)
        model = LogisticRegression(max_iter=300).fit(features, labels)
        signature = infer_signature(features, model.predict(features))
        expected = model.predict(features)
        name = {"name": "model"} if mlflow_3 else {"artifact_path": "model"}
        # The same format on both sides (MLflow >= 3.14 defaults to skops).
        extra = {"serialization_format": "cloudpickle"} if mlflow_3 else {}

        def model_round_trip(side: Side) -> float:
            side.activate()
            experiment = mlflow.set_experiment("bench-models")
            started = time.perf_counter()
            with mlflow.start_run(experiment_id=experiment.experiment_id):
                info = mlflow.sklearn.log_model(
                    model, signature=signature, input_example=features.head(3), **name, **extra
                )
            logged = time.perf_counter()
            loaded = mlflow.pyfunc.load_model(info.model_uri)
            done = time.perf_counter()
            assert np.array_equal(loaded.predict(features), expected)
            measured["log"][side.name].append(logged - started)
            measured["load"][side.name].append(done - logged)
            return done - started

        for side in sides:  # warm imports (flavors, model validation) once
            model_round_trip(side)
        for parts in (measured["log"], measured["load"]):
            for values in parts.values():
                values.clear()
        measured["model"] = _timed(sides, args.model_rounds, model_round_trip)
        spark_aml_bridge.disconnect()
    return measured


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kb", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model-rounds", type=int, default=5)
    args = parser.parse_args()

    import mlflow

    work = Path(tempfile.mkdtemp(prefix="bench-artifacts-"))
    try:
        # MLflow prints run links on stdout: only the JSON result goes there.
        with contextlib.redirect_stdout(sys.stderr):
            measured = _measure(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    big_times, small_times, model_times = measured["big"], measured["small"], measured["model"]

    big_mb = args.big_mb
    small_mb = args.files * args.file_kb / 1024

    def rate(seconds: list[float], megabytes: float) -> float:
        return megabytes / statistics.median(seconds)

    result = {
        "mlflow": mlflow.__version__,
        "rounds": args.rounds,
        "upload_one_file": {
            "size_mb": round(big_mb, 1),
            "bridge_mb_per_s": round(rate(big_times["bridge"], big_mb), 1),
            "plain_mb_per_s": round(rate(big_times["plain"], big_mb), 1),
            "throughput_ratio_bridge_over_plain": round(
                statistics.median(big_times["plain"]) / statistics.median(big_times["bridge"]), 2
            ),
            "seconds": {k: [round(t, 2) for t in v] for k, v in big_times.items()},
        },
        "upload_many_files": {
            "files": args.files,
            "file_kb": args.file_kb,
            "bridge_files_per_s": round(args.files / statistics.median(small_times["bridge"]), 1),
            "plain_files_per_s": round(args.files / statistics.median(small_times["plain"]), 1),
            "bridge_mb_per_s": round(rate(small_times["bridge"], small_mb), 2),
            "plain_mb_per_s": round(rate(small_times["plain"], small_mb), 2),
            "throughput_ratio_bridge_over_plain": round(
                statistics.median(small_times["plain"]) / statistics.median(small_times["bridge"]),
                2,
            ),
            "seconds": {k: [round(t, 2) for t in v] for k, v in small_times.items()},
        },
        "sklearn_log_model_plus_load_model": {
            "rounds": args.model_rounds,
            "bridge_median_s": round(statistics.median(model_times["bridge"]), 3),
            "plain_median_s": round(statistics.median(model_times["plain"]), 3),
            "time_ratio_bridge_over_plain": round(
                statistics.median(model_times["bridge"]) / statistics.median(model_times["plain"]),
                2,
            ),
            "median_s_log_model": {
                k: round(statistics.median(v), 3) for k, v in measured["log"].items()
            },
            "median_s_load_model": {
                k: round(statistics.median(v), 3) for k, v in measured["load"].items()
            },
            "seconds": {k: [round(t, 3) for t in v] for k, v in model_times.items()},
        },
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
