"""Sandbox escapes fail in both languages; limits stop runaway code; errors carry lines."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tideflow.engine.transforms.javascript import JavaScriptRunner, JavaScriptWorker
from tideflow.engine.transforms.python_sandbox import CompileError, PythonRunner
from tideflow.engine.transforms.records import Input, Output
from tideflow.engine.transforms.runtime import Failure, Limits, Runner, output_of

LIMITS = Limits(time_ms=300, memory_mb=64)
ROW = Input({"id": 1, "t": "x"}, {"id": 1}, "public.items", 0)

PY_ESCAPES = {
    "read-file": 'return {"x": open("/etc/passwd").read()}',
    "read-file-io": 'import io\n    return {"x": io.open("/etc/passwd").read()}',
    "read-file-subclasses": (
        "for c in ().__class__.__base__.__subclasses__():\n"
        "        if c.__name__ == 'FileIO':\n"
        "            return {'x': str(c('/etc/passwd').read())}\n"
        "    raise RuntimeError('no FileIO')"
    ),
    "socket": 'import socket\n    return {"x": str(socket.socket())}',
    "socket-via-subclasses": (
        "for c in ().__class__.__base__.__subclasses__():\n"
        "        g = getattr(getattr(c, '__init__', None), '__globals__', {})\n"
        "        if 'socket' in g and hasattr(g['socket'], 'socket'):\n"
        "            return {'x': str(g['socket'].socket())}\n"
        "    raise RuntimeError('no socket module reachable')"
    ),
    "subprocess": 'import subprocess\n    return {"x": subprocess.check_output(["id"]).decode()}',
    "os-system-via-subclasses": (
        "for c in ().__class__.__base__.__subclasses__():\n"
        "        g = getattr(getattr(c, '__init__', None), '__globals__', {})\n"
        "        if 'system' in g:\n"
        "            return {'x': g['system']('id')}\n"
        "    raise RuntimeError('no os reachable')"
    ),
    "eval": 'return {"x": eval("1")}',
}


def python(body: str) -> str:
    return f"def _streamkap_transform(valueObject, keyObject, topic, timestamp):\n    {body}\n"


@pytest.fixture
def runners() -> Iterator[list[Runner]]:
    made: list[Runner] = []
    yield made
    for r in made:
        r.close()


@pytest.mark.parametrize("body", PY_ESCAPES.values(), ids=list(PY_ESCAPES))
def test_python_escapes_fail(body: str, runners: list[Runner]) -> None:
    runner = PythonRunner({"value_transform": python(body)}, LIMITS)
    runners.append(runner)
    [result] = runner.run([ROW])
    assert isinstance(result, Failure), result
    assert "root:" not in result.message and "uid=" not in result.message


JS_ESCAPES = {
    "require-fs": "return {x: require('fs').readFileSync('/etc/passwd', 'utf8')};",
    "std-open": "return {x: std.open('/etc/passwd', 'r').readAsString()};",
    "os-exec": "return {x: os.exec(['id'])};",
    "fetch": "return {x: fetch('http://127.0.0.1:9092')};",
    "import": "return import('os');",
    "xhr": "return {x: new XMLHttpRequest()};",
}


@pytest.mark.parametrize("body", JS_ESCAPES.values(), ids=list(JS_ESCAPES))
def test_javascript_escapes_fail(body: str) -> None:
    code = f"function _streamkap_transform(v, k, t, ts) {{\n  {body}\n}}"
    [result] = JavaScriptRunner({"value_transform": code}, LIMITS).run([ROW])
    # import() yields a Promise that never resolves to a module (JSON: {}): no data gets out.
    assert isinstance(result, Failure) or (isinstance(result, Output) and not result.value)


def test_python_limits_and_lines(runners: list[Runner]) -> None:
    code = (
        "def _streamkap_transform(v, k, t, ts):\n"
        "    if v['id'] == 2:\n"
        "        raise ValueError('bad row')\n"
        "    if v['id'] == 3:\n"
        "        while True:\n"
        "            pass\n"
        "    if v['id'] == 4:\n"
        "        a = []\n"
        "        while True:\n"
        "            a.append('x' * 10**6)\n"
        "    return {**v, 'double': v['id'] * 2}\n"
    )
    runner = PythonRunner({"value_transform": code}, LIMITS)
    runners.append(runner)
    rows = [Input({"id": i}, {"id": i}, "public.items", 0) for i in range(1, 6)]
    out = runner.run(rows)
    assert out[0] == Output({"id": 1, "double": 2})
    assert out[1] == Failure("ValueError: bad row", 3)
    assert isinstance(out[2], Failure) and "time limit" in out[2].message
    assert isinstance(out[3], Failure) and "memory limit" in out[3].message
    assert out[4] == Output({"id": 5, "double": 10})


JS_FAULTS = (
    "function _streamkap_transform(v, k, t, ts) {\n"
    "  if (v.id == 2) throw new Error('bad row');\n"
    "  if (v.id == 3) { while (true) {} }\n"
    "  if (v.id == 4) { var a = []; while (true) a.push(new Array(100000).fill(1)); }\n"
    "  v.double = v.id * 2; return v;\n"
    "}"
)


@pytest.mark.parametrize("where", ["in-process", "worker"])
def test_javascript_limits_and_lines(where: str, runners: list[Runner]) -> None:
    kind = JavaScriptRunner if where == "in-process" else JavaScriptWorker
    runner = kind({"value_transform": JS_FAULTS}, LIMITS)
    runners.append(runner)
    out = runner.run([Input({"id": i}, {"id": i}, "public.items", 0) for i in range(1, 6)])
    assert out[0] == Output({"id": 1, "double": 2})
    assert out[1] == Failure("Error: bad row", 2)
    assert isinstance(out[2], Failure) and "time limit" in out[2].message
    assert isinstance(out[3], Failure) and "memory limit" in out[3].message
    assert out[4] == Output({"id": 5, "double": 10})


def test_python_syntax_error_names_the_line() -> None:
    with pytest.raises(CompileError) as info:
        PythonRunner(
            {"value_transform": "def _streamkap_transform(v, k, t, ts):\n  return (\n"}, LIMITS
        )
    assert info.value.failure.line is not None


def test_topic_fan_out_and_key() -> None:
    code = {
        "value_transform": "function _streamkap_transform(v) { return v; }",
        "topic_transform": (
            "function _streamkap_transform_topic(v, k, t) { return [t, t + '_copy']; }"
        ),
        "key_transform": "function _streamkap_transform_key(v, k) { return {id: k.id}; }",
    }
    [out] = JavaScriptRunner(code, LIMITS).run([ROW])
    assert out == Output({"id": 1, "t": "x"}, {"id": 1}, ("public.items", "public.items_copy"))


@pytest.mark.parametrize(
    "topic",
    ["", "public.", ".items", [], ["public.a", ""], 3, ["public.a", None]],
    ids=[
        "empty",
        "no-table",
        "leading-dot",
        "empty-list",
        "empty-in-list",
        "number",
        "null-in-list",
    ],
)
def test_bad_topic_names_fail_the_record(topic: object) -> None:
    out = output_of({"id": 1}, None, topic)
    assert isinstance(out, Failure) and "topic function" in out.message


def test_topic_names_schema_optional() -> None:
    assert output_of({"id": 1}, None, "items_eu") == Output({"id": 1}, None, ("items_eu",))
    assert output_of({"id": 1}, None, ["a.b", "c"]) == Output({"id": 1}, None, ("a.b", "c"))


def test_key_must_agree_with_the_value() -> None:
    assert output_of({"id": 1}, {"id": 1, "shard": 2}, None) == Output(
        {"id": 1}, {"id": 1, "shard": 2}
    )
    out = output_of({"id": 1}, {"id": 10}, None)
    assert isinstance(out, Failure) and "id=10" in out.message and "id=1" in out.message
    assert isinstance(output_of({"id": 1}, {}, None), Failure)
    assert output_of(None, {"id": 10}, None) == Output(None, {"id": 10})  # dropped anyway


def test_javascript_batches_see_each_records_key_topic_and_timestamp() -> None:
    code = {
        "value_transform": (
            "function _streamkap_transform(v, k, t, ts) "
            "{ v.seen = [k, t, ts]; return v.id === 2 ? null : v; }"
        ),
    }
    inputs = [
        Input({"id": 1}, {"id": 1}, "public.a", 10),
        Input({"id": 2}, {"id": 2}, "public.a", 11),
        Input({"id": 3, "b": 4}, {"id": 3, "b": 4}, "public.b", 12),
        Input({"id": 4}, {}, "public.c", 13),
    ]
    assert JavaScriptRunner(code, LIMITS).run(inputs) == [
        Output({"id": 1, "seen": [{"id": 1}, "public.a", 10]}),
        Output(None),
        Output({"id": 3, "b": 4, "seen": [{"id": 3, "b": 4}, "public.b", 12]}),
        Output({"id": 4, "seen": [{}, "public.c", 13]}),
    ]
    code["key_transform"] = "function _streamkap_transform_key(v, k) { return {id: v.id}; }"
    code["topic_transform"] = "function _streamkap_transform_topic(v, k, t) { return [t, 'x.y']; }"
    out = JavaScriptRunner(code, LIMITS).run(inputs)
    assert out[0] == Output(
        {"id": 1, "seen": [{"id": 1}, "public.a", 10]}, {"id": 1}, ("public.a", "x.y")
    )
    assert out[1] == Output(None, {"id": 2}, ("public.a", "x.y"))
    assert out[3] == Output({"id": 4, "seen": [{}, "public.c", 13]}, {"id": 4}, ("public.c", "x.y"))


def test_javascript_worker_matches_in_process_and_reports_load_errors(
    runners: list[Runner],
) -> None:
    code = {
        "value_transform": "function _streamkap_transform(v, k, t, ts) { v.n = ts; return v; }",
        "topic_transform": (
            "function _streamkap_transform_topic(v, k, t) { return v.id % 2 ? t : [t, 'a.b']; }"
        ),
        "key_transform": "function _streamkap_transform_key(v, k) { return {id: k.id}; }",
    }
    rows = [Input({"id": i}, {"id": i}, "public.items", i * 10) for i in range(1, 1200)]
    worker = JavaScriptWorker(code, LIMITS)
    runners.append(worker)
    assert worker.run(rows) == JavaScriptRunner(code, LIMITS).run(rows)
    with pytest.raises(CompileError) as info:
        JavaScriptWorker(
            {"value_transform": "function _streamkap_transform(v) {\n  return (;\n}"}, LIMITS
        )
    assert info.value.failure.line == 2
