"""Login when the app listens beyond 127.0.0.1: the session's server is bound to 127.0.0.2 (this
project's rule: only 127.0.0.1, ::1 and localhost run without login), reachable from this machine
only. Without a session nothing but the login form is served; with a session, identity is the
session's."""
from __future__ import annotations

import subprocess

import pytest

from tests.curation_app.app_server import CLI, PASSWORDS, client
from tests.curation_app.conftest import WASHER
from tests.curation_app.test_image_route import get, login_cookie

PROTECTED = [
    "/config", "/gradio_api/info", "/gradio_api/openapi.json", "/gradio_api/queue/data?session_hash=x",
    "/gradio_api/call/current", "/gradio_api/upload_progress", "/gradio_api/file=/etc/passwd",
    "/gradio_api/runs", "/monitoring", "/gradio_api/deep_link", "/anything/else",
]


def test_without_a_session_only_the_login_form_is_served(served):
    status, body, _ = get(served.url, "/")
    assert status == 200 and b'"auth_required":true' in body
    assert b"sp-view" not in body and b"Accept (a)" not in body  # no part of the app itself
    name = sorted(p.name for p in (served.images / WASHER).iterdir() if p.suffix == ".JPEG")[0]
    for path in PROTECTED + [f"/img/preview/{WASHER}/{name}", f"/img/original/{WASHER}/{name}"]:
        status, body, _ = get(served.url, path)
        assert status in (401, 302), (path, status)
        assert b"\xff\xd8" not in body[:4]


def test_api_calls_without_a_session_are_refused(served):
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(served.url)
    for path in ("/gradio_api/queue/join", "/gradio_api/call/accept", "/gradio_api/upload"):
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        connection.request("POST", path, b'{"data": ["x", []], "fn_index": 0, "session_hash": "x"}',
                           {"Content-Type": "application/json"})
        assert connection.getresponse().status == 401, path


def test_wrong_password_gets_no_session(served):
    import http.client
    import urllib.parse

    parts = urllib.parse.urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    body = urllib.parse.urlencode({"username": "alice", "password": PASSWORDS["bob"]})
    connection.request("POST", "/login", body, {"Content-Type": "application/x-www-form-urlencoded"})
    response = connection.getresponse()
    assert response.status == 400 and not response.getheader("set-cookie")
    with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own error types
        from gradio_client import Client

        Client(served.url, auth=("alice", "not-her-password"), verbose=False, download_files=False)


def test_with_a_session_the_page_and_images_are_served(served):
    cookie = login_cookie(served.url, "bob")
    status, body, _ = get(served.url, "/config", cookie)
    assert status == 200 and b"sp-view" in body
    assert client(served.url, "bob").predict(api_name="/current")[3]["annotator"] == "bob"


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.2", "192.0.2.1"])
def test_listening_beyond_127_0_0_1_without_users_is_refused(served, host):
    result = subprocess.run([str(CLI), "curate", "--images", str(served.images), "--project", str(served.project),
                             "--host", host, "--port", "0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(f"error: --host {host}: the app would listen beyond 127.0.0.1")
    assert "Traceback" not in result.stderr
