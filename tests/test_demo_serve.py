"""`spark-aml-bridge demo --serve`: every address it prints answers while it says the UI is up."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import requests


def test_demo_serve_prints_only_addresses_that_open(tmp_path):
    command = [sys.executable, "-m", "spark_aml_bridge.cli", "demo", "--serve"]
    command += ["--state-dir", str(tmp_path / "demo")]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "the UI stays up until you press Ctrl-C" in line:
                break
        out = "".join(lines)
        assert "the UI stays up" in out, out
        urls = sorted(set(re.findall(r"http://127\.0\.0\.1:\d+/[^\s]*", out)))
        assert any("/#/experiments/" in url and "/runs/" in url for url in urls), out
        for url in urls:
            page = requests.get(url.split("#", 1)[0], timeout=30)
            assert page.status_code == 200 and "<html" in page.text.lower(), url
        # The run and experiment links open in the model-training view of MLflow 3's UI.
        assert all("workflowType=machine_learning" in u for u in urls if "/#/" in u)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
