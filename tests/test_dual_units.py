"""Dual tracking pieces on their own: URI, name mapping, spool, batching, de-duplication."""

from __future__ import annotations

import math
import sqlite3

import pytest

from spark_aml_bridge.dual import codec
from spark_aml_bridge.dual.batches import MAX_METRICS, plan
from spark_aml_bridge.dual.mirror import Mirror
from spark_aml_bridge.dual.names import NameRule, disambiguated
from spark_aml_bridge.dual.spool import Op, Spool, owner_alive, spool_files
from spark_aml_bridge.dual.uri import dual_options, dual_uri, parse_dual_uri
from spark_aml_bridge.errors import ConfigError


def test_dual_uri_round_trips_both_sides_and_options():
    mirror = "azureml://host:443/mlflow/v1.0/subscriptions/s/resourceGroups/r/providers/x/ws/w"
    uri = dual_uri("databricks", mirror, spool="/tmp/a b", strict="true", other=None)
    assert uri.startswith("dual:?primary=databricks&mirror=azureml%3A%2F%2F")
    assert parse_dual_uri(uri) == ("databricks", mirror)
    assert dual_options(uri) == {"spool": "/tmp/a b", "strict": "true"}
    with pytest.raises(ConfigError):
        dual_uri("databricks", "databricks")
    with pytest.raises(ConfigError):
        parse_dual_uri("dual:?primary=databricks")
    with pytest.raises(ConfigError):
        parse_dual_uri("http://example")


@pytest.mark.parametrize(
    ("rule", "name", "to_databricks", "expected"),
    [
        ("auto", "/Users/a@b.com/team/exp", False, "exp"),
        ("auto", "plain", False, "plain"),
        ("auto", "plain", True, "/Shared/plain"),
        ("auto", "/Users/a/exp", True, "/Users/a/exp"),
        ("basename", "/Users/a/exp", True, "exp"),
        ("identity", "/Users/a/exp", False, "/Users/a/exp"),
        ("prefix:adb-", "/Users/a/exp", False, "adb-exp"),
        ('{"/Users/a/exp": "exp-a"}', "/Users/a/exp", False, "exp-a"),
        ('{"/Users/a/exp": "exp-a"}', "/Users/b/other", False, "other"),
    ],
)
def test_experiment_names_map_as_configured(rule, name, to_databricks, expected):
    assert NameRule.parse(rule).mirror_name(name, mirror_is_databricks=to_databricks) == expected


def test_bad_name_rules_say_what_is_accepted():
    for bad in ("nonsense", "{not json", '{"a": 3}'):
        with pytest.raises(ConfigError, match="auto|exp"):
            NameRule.parse(bad)
    assert disambiguated("exp", "123") == "exp-123"
    assert len(disambiguated("x" * 300, "42")) == 256


def test_metric_rows_round_trip_including_nan_and_models():
    from mlflow.entities import Metric

    metrics = [Metric("a", 1.5, 10, 2), Metric("b", float("nan"), 11, 0)]
    rows = codec.metrics_out(metrics)
    assert rows == [["a", 1.5, 10, 2], ["b", rows[1][1], 11, 0]] and math.isnan(rows[1][1])
    back = codec.metrics_in(rows)
    assert [(m.key, m.timestamp, m.step) for m in back] == [("a", 10, 2), ("b", 11, 0)]
    assert codec.metric_key("b", float("nan"), 11, 0) == codec.metric_key("b", math.nan, 11, 0)
    try:
        linked = Metric("c", 1.0, 1, 1, model_id="m-1")
    except TypeError:  # MLflow 2 metrics have no model
        return
    (row,) = codec.metrics_out([linked])
    assert row[4] == "m-1" and codec.metrics_in([row])[0].model_id == "m-1"


@pytest.fixture
def spool(tmp_path):
    created = Spool.create(tmp_path / "spool", "sqlite:///p.db", "sqlite:///m.db")
    yield created
    created.close(remove_if_done=False)


def test_spool_keeps_order_limits_memory_and_acks(spool):
    spool.append("create_run", "r1", {"e": "1"})
    for i in range(5):
        spool.append("batch", "r1", {"m": [["k", float(i), 1, i]] * 1000}, 1000, bulky=True)
    ops = spool.fetch(max_units=2500)
    assert [op.kind for op in ops] == ["create_run", "batch", "batch"]
    assert spool.pending() == (6, 5000)
    spool.attempted(ops[:2])
    assert [op.attempts for op in spool.fetch()[:3]] == [1, 1, 0]
    spool.ack(ops)
    assert spool.pending() == (3, 3000)
    dead = spool.fetch()[0]
    spool.dead_letter(dead, "RestException: INVALID_PARAMETER_VALUE: too long")
    status = spool.status()
    assert status["pending_ops"] == 2 and status["dead_letters"] == 1
    assert "too long" in status["recent_dead_letters"][0]["error"]
    assert status["owner_alive"] and status["size_bytes"] > 0


def test_a_spool_belongs_to_its_lock_holder_and_disappears_when_done(tmp_path):
    folder = tmp_path / "spool"
    first = Spool.create(folder, "p", "m")
    first.append("batch", "r", {"p": [["a", "1"]]})
    (path,) = spool_files(folder)
    assert owner_alive(path) and Spool.adopt(path) is None
    assert first.close() is False  # one write still pending: kept for a replay
    assert path.exists() and not owner_alive(path)
    adopted = Spool.adopt(path)
    assert adopted is not None and adopted.meta()["primary"] == "p"
    adopted.ack(adopted.fetch())
    assert adopted.close() is True
    assert spool_files(folder) == []


def test_an_overflowing_spool_marks_runs_for_reconciliation_instead(tmp_path):
    spool = Spool.create(tmp_path, "p", "m", max_bytes=1)
    for i in range(600):
        spool.append("batch", "r1", {"m": [["k", 1.0, i, i]]}, 1, bulky=True)
    spool.append("delete_tag", "r1", {"k": "x"})  # small operations are still spooled
    assert spool.overflow and spool.counters["overflowed_ops"] > 0
    assert spool.runs_to_reconcile() == ["r1"]
    kinds = {op.kind for op in spool.fetch(max_rows=5000)}
    assert "delete_tag" in kinds
    spool.close(remove_if_done=False)


def test_the_spool_survives_a_process_that_never_closed_it(tmp_path):
    spool = Spool.create(tmp_path, "p", "m")
    spool.append("batch", "r", {"m": [["k", 1.0, 1, 1]]}, 1)
    # Another connection sees the committed row at once (as a replayer would after a crash).
    rows = sqlite3.connect(str(spool.path)).execute("SELECT kind, n FROM ops").fetchall()
    assert rows == [("batch", 1)]
    spool.close(remove_if_done=False)


def _op(seq, kind, run, **payload):
    return Op(seq, kind, run, len(payload.get("m", ())), payload, 0, 0.0)


def test_batches_merge_per_run_within_mlflow_limits_and_keep_order():
    ops = [
        _op(1, "create_run", "a"),
        _op(2, "batch", "a", m=[["x", 1.0, 1, 1]] * 600),
        _op(3, "batch", "b", t=[["t", "1"]]),
        _op(4, "batch", "a", m=[["x", 1.0, 1, 2]] * 600),  # over 1000: a second group
        _op(5, "batch", "a", t=[["t", "1"]], p=[["p", "v"]]),
        _op(6, "batch", "b", t=[["t", "2"]]),  # last value wins
        _op(7, "delete_tag", "b", k="t"),
        _op(8, "batch", "b", t=[["t", "3"]]),
    ]
    groups = plan(ops)
    assert [(g.kind, g.run, [o.seq for o in g.ops]) for g in groups] == [
        ("create_run", "a", [1]),
        ("batch", "a", [2]),
        ("batch", "b", [3, 6]),
        ("batch", "a", [4, 5]),
        ("delete_tag", "b", [7]),
        ("batch", "b", [8]),
    ]
    assert all(len(g.metrics) <= MAX_METRICS for g in groups)
    assert groups[2].tags == {"t": "2"} and groups[3].params == {"p": "v"}


class _History:
    """A mirror store that only answers get_metric_history."""

    def __init__(self, points):
        from mlflow.entities import Metric

        self.points = [Metric(k, v, t, s) for k, v, t, s in points]

    def get_metric_history(self, run_id, key):
        return [m for m in self.points if m.key == key]


def test_a_retried_batch_sends_only_points_the_mirror_lacks():
    store = _History([("x", 1.0, 10, 0), ("x", 2.0, 11, 1), ("x", 2.0, 11, 1)])
    mirror = Mirror(None, store, primary_uri="p", mirror_uri="m")
    rows = [
        ["x", 1.0, 10, 0],  # present
        ["x", 2.0, 11, 1],  # present twice: both copies match
        ["x", 2.0, 11, 1],
        ["x", 2.0, 11, 1],  # a third copy is new
        ["x", 3.0, 12, 2],  # new
        ["x", 1.0, 10, 5],  # same value, other step: new
    ]
    assert mirror._without_present("run", rows) == [
        ["x", 2.0, 11, 1],
        ["x", 3.0, 12, 2],
        ["x", 1.0, 10, 5],
    ]


def test_zero_code_setups_get_the_dual_uri_from_the_same_settings():
    from spark_aml_bridge.config import resolve_config
    from spark_aml_bridge.dual.wiring import zero_code_tracking_uri

    workspace = "azureml://h/mlflow/v1.0/subscriptions/s/resourceGroups/r/providers/p/workspaces/w"
    plain = resolve_config({}, env={}, spark_conf={})
    assert zero_code_tracking_uri(plain, workspace, "databricks") == workspace
    dual = resolve_config(
        {"mode": "dual", "dual_spool_dir": "/local_disk0/tmp/spool"}, env={}, spark_conf={}
    )
    uri = zero_code_tracking_uri(dual, workspace, "databricks")
    assert parse_dual_uri(uri) == ("databricks", workspace)
    assert dual_options(uri) == {"spool": "/local_disk0/tmp/spool"}
    swapped = resolve_config(
        {"mode": "dual", "dual_primary": "workspace", "dual_mirror": "http://mlflow:5000"},
        env={},
        spark_conf={},
    )
    assert parse_dual_uri(zero_code_tracking_uri(swapped, workspace, None)) == (
        workspace,
        "http://mlflow:5000",
    )
    with pytest.raises(ConfigError, match="no MLflow tracking of its own"):
        zero_code_tracking_uri(dual, workspace, None, "synapse")
