#!/usr/bin/env bash
# Sets up and runs every check: ruff, the test suite on MLflow 3.x and on MLflow 2.x, and the
# install checks over runtimes' own MLflow. Needs only python3 (>= 3.10) and Java 17 for Spark.
set -euo pipefail
cd "$(dirname "$0")/.."
export MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=true PIP_DISABLE_PIP_VERSION_CHECK=1
VENVS="${SPARK_AML_BRIDGE_VENVS:-.venvs}"
PY="${PYTHON:-python3}"

make_env() {  # name, then pip requirement arguments
  local name="$1"; shift
  if [ ! -x "$VENVS/$name/bin/python" ]; then
    "$PY" -m venv "$VENVS/$name"
  fi
  "$VENVS/$name/bin/pip" install -q -U pip >/dev/null
  "$VENVS/$name/bin/pip" install -q -e ".[emulator,spark,test]" "$@"
}

echo "== environment: MLflow 3 (newest), PySpark 4"
make_env mlflow3 "mlflow==3.*" "pyspark==4.*"
echo "== environment: MLflow 2.22, PySpark 3.5"
# mlflow 2.22's server needs SQLAlchemy < 2.1 (see shared/reference/verified-here.md)
make_env mlflow2 "mlflow==2.22.*" "sqlalchemy<2.1" "pyspark==3.5.*"
# Both exist before any test: the plain-client tests read what one major logged with the other.
export SPARK_AML_BRIDGE_TEST_PYTHONS="$VENVS/mlflow3/bin/python $VENVS/mlflow2/bin/python"
echo "== ruff"
"$VENVS/mlflow3/bin/ruff" check .
"$VENVS/mlflow3/bin/ruff" format --check .

echo "== headless Chromium for the UI test (tests/test_ui_browser.py)"
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
      >/dev/null 2>&1 || echo "   could not install chromium: the browser test will say it skips"
  else
    echo "   chromium missing and not installable here (needs root + apt-get): the browser test skips"
  fi
fi

echo "== tests on MLflow 3"
"$VENVS/mlflow3/bin/python" -m pytest -p no:cacheprovider "$@"

echo "== install checks: over a runtime's full mlflow 2.12 and over mlflow-skinny 3"
SPARK_AML_BRIDGE_INSTALL_CHECKS=1 "$VENVS/mlflow3/bin/python" -m pytest -p no:cacheprovider tests/install

echo "== tests on MLflow 2"
"$VENVS/mlflow2/bin/python" -m pytest -p no:cacheprovider "$@"
