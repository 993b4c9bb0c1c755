"""The dual-tracking spool under damage: corrupt leftovers, file modes, nowhere to spool."""

from __future__ import annotations

import logging
import os
import stat

import spark_aml_bridge
from spark_aml_bridge.cli import main
from spark_aml_bridge.dual.spool import LOCK_SUFFIX, Spool


def _corrupt_spool(folder):
    path = folder / "spool-deadhost-999999-0badf00d.db"
    path.write_bytes(b"this is not an SQLite database, it was cut short by a full disk\n" * 64)
    return path


def test_a_corrupt_spool_is_quarantined_and_the_others_replay(tmp_path, caplog, capsys):
    folder = tmp_path / "spool"
    primary, mirror = (f"sqlite:///{tmp_path / side}.db" for side in ("primary", "mirror"))
    good = Spool.create(folder, primary, mirror)
    good_path = good.path
    good.close(remove_if_done=False)  # as a process that died with its spool left behind
    bad = _corrupt_spool(folder)

    with caplog.at_level(logging.WARNING, logger="spark_aml_bridge"):
        code = main(["mirror", "replay", "--spool-dir", str(folder), "--timeout", "60"])
    out, err = capsys.readouterr()
    assert code == 1  # a damaged spool is a failure to report...
    assert not good_path.exists()  # ...but the healthy spool was replayed and removed
    assert not bad.exists() and not os.path.exists(str(bad) + LOCK_SUFFIX)  # no leaked lock
    moved = [p for p in folder.iterdir() if p.name.startswith(bad.name + ".corrupt-")]
    assert len(moved) == 1
    errors = [line for line in err.splitlines() if line.strip().startswith("error:")]
    assert len(errors) == 1 and bad.name in errors[0] and "backfill" in errors[0]
    assert "Traceback" not in out + err and "sqlite3." not in out + err
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any(bad.name in r.getMessage() and "backfill" in r.getMessage() for r in warnings)
    # A second replay finds nothing left to do.
    assert main(["mirror", "replay", "--spool-dir", str(folder)]) == 0


def test_wal_and_shm_files_are_private(tmp_path):
    spool = Spool.create(tmp_path, "file:///p", "file:///m")
    try:
        spool.append("log_batch", "r1", {"metrics": []}, 1, bulky=False)
        files = [spool.path, *(spool.path.with_name(spool.path.name + s) for s in ("-wal", "-shm"))]
        assert all(f.exists() for f in files)
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    finally:
        spool.close(remove_if_done=True)


def test_flush_reports_failure_when_nothing_could_be_spooled(dual_env, tmp_path, monkeypatch):
    import mlflow

    # A spool directory that cannot be created (as root, permissions alone would not stop it).
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("SPARK_AML_BRIDGE_DUAL_SPOOL_DIR", str(blocker / "spool"))
    bridge = spark_aml_bridge.connect()
    mlflow.set_experiment("unspooled")
    with mlflow.start_run():
        mlflow.log_metric("m", 1.0)
    assert bridge.dual.flush(5) is False
