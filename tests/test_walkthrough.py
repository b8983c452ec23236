"""The README's walkthrough, pasted as it is, against ``hookstream serve`` as make run starts it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT, free_port, hookstream_cmd, spawn, wait_ready_sync


def walkthrough_script() -> str:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- walkthrough -->\s*```bash\n(.*?)```\s*<!-- /walkthrough -->", readme,
                      re.S)
    assert match, "the README has no walkthrough block"
    return match.group(1)


def test_readme_walkthrough_delivers_a_signed_value(tmp_path: Path) -> None:
    api_port, receiver_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKSTREAM_")}
    env.update(HOOKSTREAM_LISTEN=f"127.0.0.1:{api_port}", HOOKSTREAM_ALLOW_PRIVATE_TARGETS="true")
    # The walkthrough runs in the checkout, with its .venv; here the same commands run in a
    # fresh folder, with this interpreter's environment and other ports.
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    (venv_bin / "python").symlink_to(sys.executable)
    (venv_bin / "hookstream").symlink_to(Path(sys.executable).with_name("hookstream"))
    script = (walkthrough_script()
              .replace("127.0.0.1:8000", f"127.0.0.1:{api_port}")
              .replace("127.0.0.1:9000", f"127.0.0.1:{receiver_port}")
              .replace("--port 9000", f"--port {receiver_port}"))
    server = spawn(hookstream_cmd("serve"), env, tmp_path / "serve.log")
    try:
        wait_ready_sync(server, tmp_path / "serve.log",
                        url=f"http://127.0.0.1:{api_port}/readyz", what="hookstream serve")
        banner = (tmp_path / "serve.log").read_text()
        admin_key = (tmp_path / "var" / "admin.key").read_text().strip()
        assert admin_key in banner, "the first start prints the admin key"
        assert "HOOKSTREAM_ALLOW_PRIVATE_TARGETS=true" in banner
        done = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=90)
    finally:
        server.terminate()
        code = server.wait(20)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    line = next(li for li in out.splitlines() if li.startswith("POST /hooks/values"))
    assert "(signature verified)" in line
    assert '"deviceId":"boiler-1"' in line and '"scaledPayload":64.2' in line
    assert '"status":"delivered"' in out, "the message log shows the delivery"
    assert code == 0, (tmp_path / "serve.log").read_text()
