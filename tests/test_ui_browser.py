"""What a person sees: the emulator's MLflow UI in a real browser (headless Chromium).

The demo's training is tracked through the bridge; the printed run link is opened; the page's
DOM must show the run, a metric, the artifact tree with the model's MLmodel, and the logged
image rendered. Screenshots are kept under test-output/ui/ (SPARK_AML_BRIDGE_TEST_OUTPUT).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from chromium import Chromium, find_chromium

OUTPUT = Path(
    os.environ.get(
        "SPARK_AML_BRIDGE_TEST_OUTPUT", Path(__file__).resolve().parent.parent / "test-output"
    )
)
IMAGE_RENDERED = (
    "Array.from(document.images).filter(i => i.naturalWidth > 100 && "
    "(i.src.startsWith('blob:') || i.src.includes('confusion_matrix'))).length"
)


@pytest.fixture(scope="module")
def browser():
    if find_chromium() is None:
        pytest.skip(
            "Chromium is not installed and could not be (tests/run-all.sh installs the Debian "
            "package `chromium` when it runs as root with apt-get)"
        )
    with Chromium() as chromium:
        yield chromium


@pytest.fixture(scope="module")
def demo_run(emulator):
    """The demo's grid search, tracked through connect() into the session's emulator."""
    import spark_aml_bridge
    from spark_aml_bridge.demo import train_and_track

    saved = {k: os.environ.get(k) for k in emulator.info["env"]}
    os.environ.update(emulator.info["env"])
    try:
        bridge = spark_aml_bridge.connect()
        result = train_and_track("ui-browser-demo")
        urls = {
            "run": bridge.run_url(result["run_id"]),
            "experiment": bridge.experiment_url(result["experiment_id"]),
        }
        yield result, urls
    finally:
        spark_aml_bridge.disconnect()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _tab(run_url: str, tail: str) -> str:
    """The run page's route for one tab/artifact, keeping the link's query (workflowType)."""
    base, _, query = run_url.partition("?")
    return f"{base}/{tail}" + (f"?{query}" if query else "")


def test_run_page_shows_run_metric_and_rendered_image(browser, demo_run, emulator):
    result, urls = demo_run
    ui = emulator.info["ui_url"].rstrip("/")
    assert urls["run"].startswith(ui + "/#/experiments/"), urls["run"]
    OUTPUT.joinpath("ui").mkdir(parents=True, exist_ok=True)

    # The run page, as linked: its name and a metric with its value.
    browser.quiet_mlflow_ui(ui + "/")
    browser.open(urls["run"])
    browser.wait_for("document.body.innerText.includes('best_accuracy')", what="the run's metrics")
    text = browser.text()
    assert "grid-search" in text
    assert f"{result['best'][0]:.4f}"[:5] in text
    assert "INTERNAL_ERROR" not in text
    browser.screenshot(OUTPUT / "ui" / "run-overview.png")

    # The logged image, listed through the AML artifact service and rendered from the bytes the
    # UI server fetched with a blob SAS.
    browser.open(_tab(urls["run"], "artifacts/confusion_matrix.png"))
    assert browser.wait_for(IMAGE_RENDERED, what="the confusion matrix image rendered")
    text = browser.text()
    assert "Loading artifact failed" not in text and "INTERNAL_ERROR" not in text
    browser.screenshot(OUTPUT / "ui" / "run-artifacts-image.png")


def test_artifact_tree_shows_the_model_and_its_mlmodel(browser, demo_run):
    _, urls = demo_run
    browser.open(_tab(urls["run"], "artifacts/model/MLmodel"))
    browser.wait_for(
        "document.body.innerText.includes('flavors')",
        timeout=30,
        what="model/MLmodel listed and previewed",
    )
    text = browser.text()
    assert "confusion_matrix.png" in text and "MLmodel" in text, text
    assert "model.pkl" in text or "model.skops" in text, text  # the model file itself
    assert "sklearn" in text  # the MLmodel file's flavors, read through the blob SAS
    browser.screenshot(OUTPUT / "ui" / "run-artifacts-model.png")


def test_experiment_opens_in_model_training_view(browser, demo_run):
    _, urls = demo_run
    browser.open(urls["experiment"])
    # The runs table (model training view) lists the run; the GenAI view would show traces.
    browser.wait_for(
        "document.body.innerText.includes('grid-search')", what="the experiment's runs table"
    )
    text = browser.text()
    assert "Detect Issues" not in text
    browser.screenshot(OUTPUT / "ui" / "experiment-runs.png")
