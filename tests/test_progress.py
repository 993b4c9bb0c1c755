"""Progress on long work: a live bar (count, bytes, rate, ETA) on a terminal, one summary line
otherwise, nothing inside Spark tasks. Terminals are real pseudo-terminals (pty)."""

from __future__ import annotations

import io
import os
import pty
import select
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from spark_aml_bridge.progress import Progress, for_transfer

MB = 1024 * 1024


def _read_all(fd: int, proc: subprocess.Popen | None = None, timeout: float = 300) -> str:
    """Everything written to the pty's other end (until the writer is gone)."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the other end closed
                break
            if not data:
                break
            chunks.append(data)
        elif proc is None or proc.poll() is not None:
            if proc is None or not select.select([fd], [], [], 0.2)[0]:
                break
    return b"".join(chunks).decode("utf-8", "replace")


def test_terminal_shows_count_bytes_rate_and_eta() -> None:
    pytest.importorskip("tqdm", reason="tqdm draws the bar (the [progress] extra)")
    master, slave = pty.openpty()
    with open(slave, "w", encoding="utf-8", closefd=True) as terminal:
        progress = Progress("uploading", total=4, total_bytes=4 * MB, unit="file", stream=terminal)
        assert progress.live
        for _ in range(4):
            time.sleep(0.05)
            progress.advance(1, MB)
        progress.close()
        terminal.flush()
    out = _read_all(master)
    os.close(master)
    assert "uploading" in out
    assert "4/4 files" in out  # count
    assert "4.00M" in out  # bytes (tqdm: 4.00M/4.00M)
    assert "B/s" in out  # rate
    assert "<" in out  # elapsed<remaining: the ETA


def test_not_a_terminal_one_summary_line() -> None:
    stream = io.StringIO()
    progress = Progress("mirror backfill", total=0, unit="run", stream=stream)
    assert not progress.live
    progress.add_total(3)
    for _ in range(3):
        progress.advance()
    assert stream.getvalue() == ""  # quiet while it runs
    progress.close()
    progress.close()  # once
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("mirror backfill: 3 runs in ") and "runs/s" in lines[0]


def test_small_transfers_show_nothing() -> None:
    assert for_transfer("x", [10] * 999) is None
    assert for_transfer("x", [50 * MB]) is None
    assert for_transfer("x", [10] * 1000) is not None
    assert for_transfer("x", [60 * MB, 60 * MB]) is not None


def test_nothing_from_spark_tasks(spark) -> None:
    def in_task(_rows):
        from spark_aml_bridge.progress import Progress, in_spark_task

        stream = io.StringIO()
        with Progress("inside a task", total=1, stream=stream) as progress:
            progress.advance()
        yield (in_spark_task(), stream.getvalue())

    results = spark.sparkContext.parallelize([0, 1], 2).mapPartitions(in_task).collect()
    assert results == [(True, ""), (True, "")]


_UPLOAD = textwrap.dedent(
    """
    import os, sys, tempfile, mlflow, spark_aml_bridge
    spark_aml_bridge.connect()
    mlflow.set_experiment("progress-upload")
    folder = tempfile.mkdtemp()
    for i in range(1000):
        with open(os.path.join(folder, f"f{i:04d}.txt"), "w") as handle:
            handle.write("x" * 100)
    with mlflow.start_run():
        mlflow.log_artifacts(folder, "many")
    """
)


def test_large_artifact_upload_in_a_terminal_and_piped(use_emulator) -> None:
    pytest.importorskip("tqdm", reason="tqdm draws the bar (the [progress] extra)")
    env = {**os.environ, "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true"}
    # In a pseudo-terminal: the bar.
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _UPLOAD], stdin=slave, stdout=slave, stderr=slave, env=env
    )
    os.close(slave)
    out = _read_all(master, proc)
    os.close(master)
    assert proc.wait(timeout=300) == 0, out[-3000:]
    assert "uploading artifacts" in out and "1000/1000 files" in out, out[-3000:]
    assert "B/s" in out

    # Piped (a log, CI): one summary line, no bar.
    done = subprocess.run(
        [sys.executable, "-c", _UPLOAD], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "uploading artifacts" in line]
    assert len(lines) == 1, done.stderr[-3000:]
    assert ": 1000 files, 97.7 KB in " in lines[0] and "\r" not in done.stderr


def test_backfill_says_how_much_it_did_when_not_a_terminal(dual_env, dual_primary, capsys):
    from mlflow.tracking import MlflowClient

    from spark_aml_bridge.cli import main

    primary_uri, _ = dual_primary
    client = MlflowClient(primary_uri)
    experiment_id = client.create_experiment(
        f"/Users/p@example.com/progress-{uuid.uuid4().hex[:8]}"
    )
    for name in ("a", "b"):
        run = client.create_run(experiment_id, run_name=name)
        client.set_terminated(run.info.run_id)
    assert main(["mirror", "backfill", "--experiment-id", experiment_id]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("mirror backfill:")]
    assert len(lines) == 1 and lines[0].startswith("mirror backfill: 2 runs in "), err
