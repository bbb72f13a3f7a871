"""`semantic-pairs demo` (what `make demo` runs): proposals first, then the app on the bundled
sample in ./demo_project, on 127.0.0.1 without login; Ctrl-C stops it cleanly."""
from __future__ import annotations

import urllib.request

from tests.curation_app.app_server import CLI, AppServer


def test_demo_proposes_serves_the_sample_and_stops_on_ctrl_c(tmp_path):
    server = AppServer(None, tmp_path / "demo_project", command=[str(CLI), "demo", "--port", "0"], cwd=tmp_path)
    server.start(timeout=300)
    try:
        output = "".join(server.output)
        assert "proposals computed" in output and (tmp_path / "demo_project" / "proposals.parquet").is_file()
        assert server.url.startswith("http://127.0.0.1:")
        assert "no login (loopback only)" in output and "18 classes" in output
        with urllib.request.urlopen(server.url + "config", timeout=30) as response:  # no login on 127.0.0.1
            assert b"sp-view" in response.read()
        with urllib.request.urlopen(server.url + "gradio_api/info", timeout=30) as response:
            assert response.status == 200
    finally:
        code = server.stop()
    assert code == 0, "".join(server.output)
    assert "curation app stopped" in "".join(server.output)
    assert (tmp_path / "demo_project" / "decisions.sqlite").is_file()
