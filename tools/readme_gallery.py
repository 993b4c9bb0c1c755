"""Generate the README's gallery from real runs, so what it shows stays true.

    python tools/readme_gallery.py [--out docs/gallery] [--readme README.md]

Starts a workspace emulator, then records: `spark-aml-bridge doctor` passing and failing (a role
missing: the emulator answers 403), the emulator's MLflow UI on the demo's run (headless
Chromium: run page and artifacts with the rendered image), and a dual-tracking run seen on both
sides (the Databricks workspace double as primary, the workspace as mirror). With --readme, the
README's text between the gallery markers is rewritten from what was recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- gallery:start -->", "<!-- gallery:end -->"


def _doctor_text(settings: dict[str, Any] | None = None) -> str:
    from spark_aml_bridge import session
    from spark_aml_bridge.doctor import doctor

    session._reset_for_tests()  # a fresh process's view
    lines: list[str] = []
    doctor(settings, out=lines.append)
    return "\n".join(lines) + "\n"


def record_doctor(emulator: Any, out: Path) -> dict[str, str]:
    passing = _doctor_text()
    emulator.inject_faults(403, count=5, path_contains="experiments/search")
    try:
        failing = _doctor_text()
    finally:
        emulator.reset()
    (out / "doctor-pass.txt").write_text(passing)
    (out / "doctor-fail.txt").write_text(failing)
    return {"pass": passing, "fail": failing}


def record_ui(emulator: Any, out: Path) -> list[Path]:
    import spark_aml_bridge
    from spark_aml_bridge.demo import train_and_track

    sys.path.insert(0, str(ROOT / "tests"))
    from chromium import Chromium, find_chromium

    bridge = spark_aml_bridge.connect()
    result = train_and_track()
    run_url = bridge.run_url(result["run_id"])
    spark_aml_bridge.disconnect()
    if find_chromium() is None:
        raise SystemExit("the gallery needs Chromium (Debian: apt-get install chromium)")
    base, _, query = run_url.partition("?")
    shots = []
    with Chromium() as browser:
        browser.quiet_mlflow_ui(run_url.split("#", 1)[0])
        browser.open(run_url)
        browser.wait_for(
            "document.body.innerText.includes('best_accuracy') && "
            "document.body.innerText.includes('C=0.01')",
            what="the run and its child runs",
        )
        shots.append(browser.screenshot(out / "ui-run.png"))
        browser.open(f"{base}/artifacts/confusion_matrix.png?{query}")
        browser.wait_for(
            "Array.from(document.images).some(i => i.naturalWidth > 100 && "
            "i.src.startsWith('blob:'))",
            what="the image artifact rendered",
        )
        shots.append(browser.screenshot(out / "ui-artifacts.png"))
    return shots


def record_dual(emulator: Any, out: Path) -> str:
    import mlflow
    from mlflow.tracking import MlflowClient

    import spark_aml_bridge
    from spark_aml_bridge.dual.uri import MIRROR_RUN_TAG
    from spark_aml_bridge.dual.worker import close_all

    info = emulator.info
    if not info.get("databricks_host"):
        raise SystemExit("the gallery's dual-tracking run needs the emulator's Databricks double")
    os.environ.update(
        {
            "DATABRICKS_HOST": info["databricks_host"],
            "DATABRICKS_TOKEN": info["databricks_token"],
            "SPARK_AML_BRIDGE_DUAL_PRIMARY": "databricks",
            "SPARK_AML_BRIDGE_DUAL_SPOOL_DIR": tempfile.mkdtemp(prefix="gallery-spool-"),
        }
    )
    bridge = spark_aml_bridge.connect(mode="dual")
    experiment = f"/Users/gallery@example.com/dual-{uuid.uuid4().hex[:6]}"
    mlflow.set_experiment(experiment)
    with mlflow.start_run(run_name="dual-demo") as run:
        mlflow.log_params({"learning_rate": 0.1, "max_depth": 6})
        for step, loss in enumerate((0.9, 0.5, 0.31, 0.22)):
            mlflow.log_metric("loss", loss, step=step)
        mlflow.log_text("trained on the iris data\n", "notes.txt")
    primary_uri, mirror_uri = bridge.dual.primary_uri, bridge.dual.mirror_uri
    close_all(timeout=30)  # the mirror has everything once the spool is drained
    spark_aml_bridge.disconnect()
    primary, mirror = MlflowClient(primary_uri), MlflowClient(mirror_uri)
    p = primary.get_run(run.info.run_id)
    q = mirror.get_run(p.data.tags[MIRROR_RUN_TAG])
    lines = []
    for side, client, seen in (
        ("primary (Databricks)", primary, p),
        ("mirror (Azure ML)", mirror, q),
    ):
        history = [m.value for m in client.get_metric_history(seen.info.run_id, "loss")]
        files = [f.path for f in client.list_artifacts(seen.info.run_id)]
        experiment_name = client.get_experiment(seen.info.experiment_id).name
        lines += [
            f"{side}: run {seen.info.run_id} '{seen.info.run_name}' {seen.info.status}",
            f"  experiment {experiment_name}",
            f"  params  {dict(sorted(seen.data.params.items()))}",
            f"  loss    {history}",
            f"  files   {files}",
        ]
    from spark_aml_bridge.cli import main

    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        main(["mirror", "verify", "--primary", primary_uri, "--mirror", mirror_uri,
              "--run-id", run.info.run_id])  # fmt: skip
    verify_line = captured.getvalue().strip().splitlines()[-1]
    text = "\n".join(lines) + f"\n$ spark-aml-bridge mirror verify --run-id …\n{verify_line}\n"
    (out / "dual-both-sides.txt").write_text(text)
    return text


def readme_section(doctor: dict[str, str], dual: str, out: Path) -> str:
    rel = out.resolve().relative_to(ROOT)
    return "\n".join(
        [
            START,
            "<!-- generated by tools/readme_gallery.py; run it to refresh -->",
            "`spark-aml-bridge doctor` against the emulator:",
            "",
            "```text",
            doctor["pass"].rstrip(),
            "```",
            "",
            "and when the identity has no role on the workspace (the emulator answers 403):",
            "",
            "```text",
            doctor["fail"].rstrip(),
            "```",
            "",
            "The emulator's MLflow UI on the demo's run (headless Chromium), and its artifacts:",
            "",
            f"![the demo's run in the emulator's MLflow UI]({rel}/ui-run.png)",
            f"![the run's artifacts, with the logged image]({rel}/ui-artifacts.png)",
            "",
            "A dual-tracking run, read back from both sides:",
            "",
            "```text",
            dual.rstrip(),
            "```",
            END,
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "gallery"))
    parser.add_argument("--readme", help="rewrite this README's gallery section")
    args = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from spark_aml_bridge.emulator.process import start_emulator

    emulator = start_emulator(tempfile.mkdtemp(prefix="gallery-emulator-"))
    try:
        os.environ.update(emulator.info["env"])
        doctor = record_doctor(emulator, out)
        record_ui(emulator, out)
        dual = record_dual(emulator, out)
    finally:
        emulator.stop()
    if args.readme:
        readme = Path(args.readme)
        text = readme.read_text()
        if START not in text or END not in text:
            raise SystemExit(f"{readme} has no {START} … {END} section")
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(head + readme_section(doctor, dual, out) + tail)
    print(f"gallery written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
