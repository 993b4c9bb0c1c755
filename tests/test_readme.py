"""Every shell command the README shows is run here, so a README that drifts fails CI.

Convention (for everyone editing README.md):
- Every fenced ```bash block is run, in document order, as one bash script (`set -euo pipefail`),
  so a later block sees what an earlier one exported (e.g. the emulator's env lines).
- A block that must not run here gets the line `<!-- readme-test: skip (why) -->` right above its
  fence (e.g. `bash tests/run-all.sh`, the suite itself). Blocks must end by themselves: start
  long-running things with `--detach` (or `--no-serve`) and stop them in a later block.
- Commands run in a fresh directory. `.venv` there is a shim onto the interpreter running the
  tests (the package is installed there already; the install itself is covered by
  tests/install): `python3 -m venv .venv` is a no-op and `.venv/bin/pip install` only checks that
  it installs this project (`-e '.[...]'`) with extras setup.cfg declares.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP_MARK = re.compile(r"<!--\s*readme-test:\s*skip\b.*-->")
FENCE = re.compile(r"^```(\S*)\s*$")


def bash_blocks(text: str) -> list[tuple[int, str, bool]]:
    """(line number, code, skipped) of each fenced ```bash block, in order."""
    blocks: list[tuple[int, str, bool]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start, language = i, match.group(1)
        i += 1
        body = []
        while i < len(lines) and not lines[i].startswith("```"):
            body.append(lines[i])
            i += 1
        i += 1  # the closing fence
        if language in ("bash", "sh", "shell"):
            previous = lines[start - 1] if start else ""
            blocks.append((start + 1, "\n".join(body), bool(SKIP_MARK.search(previous))))
    return blocks


def test_block_extraction_follows_the_convention():
    text = "\n".join(
        [
            "```bash",
            "echo one",
            "```",
            "<!-- readme-test: skip (the suite itself) -->",
            "```bash",
            "bash tests/run-all.sh",
            "```",
            "```python",
            "print('not shell')",
            "```",
        ]
    )
    assert bash_blocks(text) == [(1, "echo one", False), (5, "bash tests/run-all.sh", True)]


def _extras() -> set[str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg")
    return set(parser["options.extras_require"])


def _write_script(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _sandbox(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    work = tmp_path / "readme"
    bin_dir = work / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    shims = tmp_path / "shims"
    shims.mkdir()
    python = sys.executable
    _write_script(bin_dir / "python", f'#!/bin/sh\nexec "{python}" "$@"\n')
    _write_script(
        bin_dir / "spark-aml-bridge", f'#!/bin/sh\nexec "{python}" -m spark_aml_bridge.cli "$@"\n'
    )
    extras = "|".join(sorted(_extras()))
    _write_script(
        bin_dir / "pip",
        "#!/bin/bash\n"
        "# The package is already installed in the test interpreter; check what is asked.\n"
        '[ "$1" = install ] || { echo "pip shim: only install is expected" >&2; exit 2; }\n'
        'for arg in "$@"; do\n'
        '  case "$arg" in\n'
        "    .|'.['*']'|.\\[*\\])\n"
        '      extras="${arg#.[}"; extras="${extras%]}"\n'
        '      [ "$arg" = . ] && exit 0\n'
        '      IFS=, read -ra names <<< "$extras"\n'
        '      for name in "${names[@]}"; do\n'
        f'        [[ "$name" =~ ^({extras})$ ]] || {{ echo "unknown extra $name" >&2; exit 2; }}\n'
        "      done\n"
        "      exit 0;;\n"
        "  esac\n"
        "done\n"
        'echo "pip shim: expected an install of this project (-e .)" >&2; exit 2\n',
    )
    _write_script(
        shims / "python3",
        "#!/bin/bash\n"
        "# `python3 -m venv .venv`: the test provides .venv.\n"
        '[ "$1" = -m ] && [ "$2" = venv ] && exit 0\n'
        f'exec "{python}" "$@"\n',
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AZURE_", "SPARK_AML_BRIDGE_", "MLFLOW_TRACKING", "MLFLOW_REGISTRY"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = f"{shims}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path / "home")  # no spools or settings of the developer's own
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    return work, env


def _stop_emulators(work: Path) -> None:
    for info in work.rglob("emulator.json"):
        try:
            os.kill(int(json.loads(info.read_text())["pid"]), signal.SIGTERM)
        except (OSError, ValueError, KeyError):
            pass


def test_readme_shows_the_commands_users_need():
    text = (ROOT / "README.md").read_text()
    shown = "\n".join(code for _, code, skipped in bash_blocks(text) if not skipped)
    for command in (
        "spark-aml-bridge demo --no-serve",
        "spark-aml-bridge emulator --state-dir",
        "emulator.json",
        "spark_aml_bridge.connect()",
        "spark-aml-bridge doctor",
        "spark-aml-bridge settings",
        "spark-aml-bridge init-script databricks --help",
        "spark-aml-bridge mirror status",
    ):
        assert command in shown, f"the README no longer shows (runnable) {command!r}"


def test_every_readme_shell_command_runs(tmp_path):
    blocks = bash_blocks((ROOT / "README.md").read_text())
    script = ["set -euo pipefail"]
    for line, code, skipped in blocks:
        if not skipped:
            script += [f'echo "### README.md block at line {line}" >&2', code]
    work, env = _sandbox(tmp_path)
    try:
        result = subprocess.run(
            ["bash", "-c", "\n".join(script)],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            stdin=subprocess.DEVNULL,
        )
    finally:
        _stop_emulators(work)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    for line, _, skipped in blocks:
        assert skipped or f"### README.md block at line {line}" in result.stderr
    # What the README promises those commands print.
    # The demo (--no-serve) says its UI stops with it and prints no address that is dead.
    assert "best accuracy" in result.stdout and "demo --serve" in result.stdout
    assert "all checks passed" in result.stdout  # doctor, with the emulator's env
    assert "SPARK_AML_BRIDGE_WORKSPACE" in result.stdout  # settings
