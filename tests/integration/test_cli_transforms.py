"""The real `tideflow transforms test` command: code run locally in the pipelines' sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SAMPLES = [
    {"value": {"id": 1, "name": "ann"}, "key": {"id": 1}, "topic": "public.users", "timestamp": 5},
    {"value": {"id": 2, "name": "bob"}, "key": {"id": 2}, "topic": "public.users"},
]
CODE = {
    "js": """function _streamkap_transform(valueObject, keyObject, topic, timestamp) {
  if (valueObject.id === 2) return null;
  valueObject.name = valueObject.name.toUpperCase();
  valueObject.ts = timestamp;
  return valueObject;
}
function _streamkap_transform_topic(valueObject, keyObject, topic, timestamp) {
  return [topic, 'audit.users'];
}
""",
    "py": """def _streamkap_transform(valueObject, keyObject, topic, timestamp):
    if valueObject["id"] == 2:
        return None
    valueObject["name"] = valueObject["name"].upper()
    valueObject["ts"] = timestamp
    return valueObject


def _streamkap_transform_topic(valueObject, keyObject, topic, timestamp):
    return [topic, "audit.users"]
""",
}
# Each fails on line 3: the first when loaded, the second on the first record.
BROKEN = {
    "js": (
        "function _streamkap_transform(v) {\n  var x = 1;\n  return v.id +;\n}\n",
        "function _streamkap_transform(v) {\n  var x = 1;\n  return v.missing.field;\n}\n",
    ),
    "py": (
        "def _streamkap_transform(v, k, t, ts):\n    x = 1\n    return v[\n",
        "def _streamkap_transform(v, k, t, ts):\n    x = 1\n    return v['missing']\n",
    ),
}


def tideflow(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tideflow.cli.main", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def samples(tmp_path: Path) -> Path:
    path = tmp_path / "sample.json"
    path.write_text(json.dumps(SAMPLES))
    return path


@pytest.mark.parametrize("ext", ["js", "py"])
def test_runs_code_on_samples(tmp_path: Path, samples: Path, ext: str) -> None:
    code = tmp_path / f"transform.{ext}"
    code.write_text(CODE[ext])
    out = tideflow("transforms", "test", code, "--input", samples)
    assert out.returncode == 0, out.stderr
    value = {"id": 1, "name": "ANN", "ts": 5}
    assert json.loads(out.stdout) == [
        {
            "index": 0,
            "dropped": False,
            "outputs": [
                {"topic": "public.users", "key": {"id": 1}, "value": value},
                {"topic": "audit.users", "key": {"id": 1}, "value": value},
            ],
        },
        {"index": 1, "dropped": True, "outputs": []},
    ]


@pytest.mark.parametrize("ext", ["js", "py"])
@pytest.mark.parametrize("broken", ["syntax", "runtime"])
def test_reports_code_errors_with_line(
    tmp_path: Path, samples: Path, ext: str, broken: str
) -> None:
    code = tmp_path / "transform.txt"  # no telling extension: the language is given
    code.write_text(BROKEN[ext][broken == "runtime"])
    language = "python" if ext == "py" else "javascript"
    out = tideflow("transforms", "test", code, "--input", samples, "--language", language)
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stderr.startswith(f"{code}:3: "), out.stderr
    assert ("record 0" in out.stderr) == (broken == "runtime"), out.stderr
    assert ("SyntaxError" in out.stderr) == (broken == "syntax"), out.stderr


def test_runaway_code_is_stopped(tmp_path: Path, samples: Path) -> None:
    code = tmp_path / "loop.js"
    code.write_text("function _streamkap_transform(v) { while (true) {} }\n")
    out = tideflow("transforms", "test", code, "--input", samples, "--time-ms", "100")
    assert out.returncode == 1 and "time limit" in out.stderr, out.stderr
