"""The real `tideflow credentials` / `tideflow api-keys` CLI against the metadata store of a
live server (SQLite and Postgres): what it creates works on the server, what it revokes stops
working."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import httpx

from tests.integration.platform_helpers import unique
from tests.support.server import Server, wait_until


def tideflow(server: Server, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TIDEFLOW_DATA_DIR", None)
    env.pop("TIDEFLOW_DATABASE_URL", None)
    if server.database_url:
        env["TIDEFLOW_DATABASE_URL"] = server.database_url
    return subprocess.run(
        [sys.executable, "-m", "tideflow.cli.main", *args, "--data-dir", str(server.data_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def field(output: str, name: str) -> str:
    match = re.search(rf"^{name}:\s+(\S+)$", output, re.MULTILINE)
    assert match, output
    return match.group(1)


def token_status(server: Server, client_id: str, secret: str) -> int:
    r = httpx.post(
        f"{server.url}/auth/access-token", json={"client_id": client_id, "secret": secret}
    )
    return r.status_code


def test_credentials_create_list_revoke(server: Server) -> None:
    description = unique("cli")
    out = tideflow(
        server, "credentials", "create", "--role", "editor", "--description", description
    )
    assert out.returncode == 0, out.stderr
    client_id, secret = field(out.stdout, "client_id"), field(out.stdout, "secret")
    assert field(out.stdout, "role") == "editor"
    assert "shown once" in out.stderr

    token = server.token(client_id, secret)
    with server.client(token) as editor:
        r = editor.post("/tags", json={"name": unique("tag"), "type": ["sources"]})
        assert r.status_code == 200, r.text
        assert editor.get("/auth/credentials").status_code == 403

    listed = tideflow(server, "credentials", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if client_id in line)
    assert "editor" in row and description in row
    assert secret not in listed.stdout

    revoked = tideflow(server, "credentials", "revoke", client_id)
    assert revoked.returncode == 0, revoked.stderr
    assert client_id in revoked.stdout
    assert token_status(server, client_id, secret) == 401
    wait_until(
        lambda: (
            httpx.get(
                f"{server.url}/tags", headers={"Authorization": f"Bearer {token}"}
            ).status_code
            == 401
        ),
        timeout=5,
        what="the running server to reject the revoked credential's token",
    )


def test_cli_viewer_credential_is_read_only(server: Server) -> None:
    out = tideflow(server, "credentials", "create", "--role", "viewer")
    assert out.returncode == 0, out.stderr
    with server.client(
        server.token(field(out.stdout, "client_id"), field(out.stdout, "secret"))
    ) as c:
        assert c.get("/tags").status_code == 200
        assert c.post("/tags", json={"name": unique("tag")}).status_code == 403


def test_credentials_errors_exit_nonzero(server: Server) -> None:
    bad_role = tideflow(server, "credentials", "create", "--role", "superuser")
    assert bad_role.returncode == 1
    assert "role must be one of" in bad_role.stderr
    unknown = tideflow(server, "credentials", "revoke", "no-such-client")
    assert unknown.returncode == 1
    assert "no credential" in unknown.stderr


def test_api_keys_create_list_revoke(server: Server) -> None:
    name = unique("key")
    out = tideflow(server, "api-keys", "create", "--name", name, "--role", "editor")
    assert out.returncode == 0, out.stderr
    key_id, key = field(out.stdout, "id"), field(out.stdout, "key")
    assert key.startswith("tfk_")
    headers = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{server.url}/api/streams", headers=headers).status_code == 200

    listed = tideflow(server, "api-keys", "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if key_id in line)
    assert name in row and "editor" in row
    assert key not in listed.stdout

    revoked = tideflow(server, "api-keys", "revoke", key_id)
    assert revoked.returncode == 0, revoked.stderr
    wait_until(
        lambda: httpx.get(f"{server.url}/api/streams", headers=headers).status_code == 401,
        timeout=5,
        what="the running server to reject the revoked API key",
    )
    missing = tideflow(server, "api-keys", "revoke", "000000000000000000000000")
    assert missing.returncode == 1
    assert "no API key" in missing.stderr
