"""A separate client: stock MLflow over HTTPS with a bearer token (no bridge), reading back the
child runs of a parent run. Prints one JSON line.

    python plain_reader.py EMULATOR_JSON PARENT_RUN_ID [METRIC_KEY ...]

Emulator tokens may live seconds: a thread keeps MLFLOW_TRACKING_TOKEN fresh (MLflow reads it on
every request).
"""

import json
import os
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: the shared helper
from plain_access import emulator_token  # noqa: E402


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        info = json.load(handle)
    parent, keys = sys.argv[2], sys.argv[3:]
    os.environ["MLFLOW_TRACKING_TOKEN"] = emulator_token(info)
    stop = threading.Event()

    def refresh():
        while not stop.wait(max(1.0, info.get("token_lifetime", 3600) / 3)):
            os.environ["MLFLOW_TRACKING_TOKEN"] = emulator_token(info)

    threading.Thread(target=refresh, daemon=True).start()
    os.environ["MLFLOW_TRACKING_SERVER_CERT_PATH"] = info["ca_bundle"]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=info["workspace_url"])
    parent_run = client.get_run(parent)
    runs = client.search_runs(
        [parent_run.info.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent}'",
        max_results=1000,
    )
    out = {
        "parent": {
            "status": parent_run.info.status,
            "params": parent_run.data.params,
            "metrics": parent_run.data.metrics,
            "tags": parent_run.data.tags,
        },
        "children": {},
    }
    for run in runs:
        histories = {
            key: sorted([m.step, m.value] for m in client.get_metric_history(run.info.run_id, key))
            for key in keys
        }
        out["children"][run.info.run_id] = {
            "status": run.info.status,
            "params": run.data.params,
            "metrics": run.data.metrics,
            "tags": {k: v for k, v in run.data.tags.items() if not k.startswith("mlflow.log")},
            "histories": histories,
        }
    stop.set()
    print("READ " + json.dumps(out))


if __name__ == "__main__":
    main()
