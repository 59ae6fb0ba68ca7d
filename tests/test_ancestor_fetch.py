"""A timm name's pretrained weights that cannot be fetched: one line, exit 3, in seconds, that says how to pass a
local copy the command at hand takes; and where a hub answers, timm's own download still runs.

Every command runs in a subprocess, with its own empty Hugging Face cache (HF_HOME) and a hub address on this
machine (HF_ENDPOINT): a port nothing listens on, one that never answers, or a fake hub served here. Nothing
can be downloaded from the network, whatever network the machine has.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
# Before the fail-fast check, the hub client's retries took 54 s here (22 lines of "Retrying in ..."). The
# check answers in 4 to 7 s on a busy 2-core machine, nearly all of it Python and torch starting up.
WITHIN_S = 30  # a loaded machine starts torch slowly; the retries this replaces took 54 s

# Every command that takes --ancestor, with arguments that reach the ancestor check; and whether it takes
# --ancestor-weights, the one command that may suggest it.
COMMANDS = {
    "learn": (["learn", "--ancestor", "deit_tiny", "-o", "{tmp}/gene.safetensors"], True),
    "finetune": (
        ["finetune", "--init", "scratch", "-w", "32", "-d", "2", "--ancestor", "deit_tiny", "-o", "{tmp}/ft"],
        False,
    ),
    "bench": (["bench", "--ancestor", "deit_tiny", "-o", "{tmp}/bench"], False),
    "expand": (["expand", "--ancestor", "deit_tiny", "--depth", "2", "--width", "64", "-o", "{tmp}/desc"], False),
}


def lgtool(tmp: Path, args: list[str], **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """`python -m lgtool ARGS` with `env` over a hub-free environment: returns the process and its seconds."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_", "TRANSFORMERS_"))}
    base.update(PYTHONPATH=str(ROOT), HF_HOME=str(tmp / "hf-home"), **env)
    start = time.monotonic()
    argv = [sys.executable, "-m", "lgtool", *(a.format(tmp=tmp) for a in args)]
    proc = subprocess.run(argv, env=base, capture_output=True, text=True, timeout=120)
    return proc, time.monotonic() - start


def refused_in_one_line(proc: subprocess.CompletedProcess, seconds: float) -> str:
    lines = proc.stderr.splitlines()
    assert proc.returncode == 3, proc.stderr
    assert len(lines) == 1, proc.stderr  # no traceback, no "Retrying in ..." from the hub client
    assert seconds < WITHIN_S, f"{seconds:.1f} s: {proc.stderr}"
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("network", ["refused", "offline"])
def test_weights_that_cannot_be_fetched_fail_in_one_line_with_a_local_way(tmp_path, command, network):
    args, takes_weights = COMMANDS[command]
    if network == "refused":  # nothing listens on the port: the machine without network, made certain
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{free_port()}"}
    else:
        env = {"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://127.0.0.1:9"}
    proc, seconds = lgtool(tmp_path, args, **env)
    line = refused_in_one_line(proc, seconds)
    assert line.startswith("error: --ancestor deit_tiny: "), line
    says = "cannot fetch its pretrained weights" if network == "refused" else "no cached pretrained weights and offline"
    assert says in line, line
    assert "a model folder (timm's hub layout: config.json + model.safetensors) as --ancestor" in line
    assert ("--ancestor deit_tiny --ancestor-weights FILE" in line) is takes_weights, line
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hf-home") == []  # nothing written


def test_a_hub_that_never_answers_times_out_in_one_line(tmp_path):
    with socket.socket() as mute:  # accepts connections (the kernel's backlog) and never says a word
        mute.bind(("127.0.0.1", 0))
        mute.listen(8)
        endpoint = f"http://127.0.0.1:{mute.getsockname()[1]}"
        # HF_HUB_DISABLE_TELEMETRY: no user-agent lookup first, which would wait its own 3 s on this hub
        env = {"HF_ENDPOINT": endpoint, "HF_HUB_ETAG_TIMEOUT": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
        proc, seconds = lgtool(tmp_path, COMMANDS["expand"][0], **env)
    line = refused_in_one_line(proc, seconds)
    assert f"cannot fetch its pretrained weights from {endpoint} (ReadTimeout" in line, line
    assert "HF_HUB_ETAG_TIMEOUT=SECONDS waits longer" in line


class FakeHub(BaseHTTPRequestHandler):
    """The hub's resolve endpoint for one file: HEAD with the headers huggingface_hub reads, GET with the bytes."""

    files: dict[str, bytes] = {}
    seen: list[str] = []

    def _answer(self, body: bool):
        self.seen.append(f"{self.command} {self.path}")
        data = self.files.get(self.path)
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_HEAD(self):
        self._answer(body=False)

    def do_GET(self):
        self._answer(body=True)

    def log_message(self, *args):
        pass


def test_a_hub_that_answers_still_serves_the_pretrained_weights(tmp_path):
    """The check costs one request and changes nothing else: timm downloads the weights as it always did."""
    from lgtool.base.compat import import_timm

    timm = import_timm()
    hub_id = timm.models.get_pretrained_cfg("test_vit").hf_hub_id  # timm's tiny ViT: 0.4 M parameters
    save_file(timm.create_model("test_vit").state_dict(), tmp_path / "served.safetensors")
    served = (tmp_path / "served.safetensors").read_bytes()
    FakeHub.files, FakeHub.seen = {f"/{hub_id}/resolve/main/model.safetensors": served}, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        args = ["expand", "--ancestor", "test_vit", "--depth", "2", "--width", "32", "--json", "-o", "{tmp}/desc"]
        proc, _ = lgtool(tmp_path, args, HF_ENDPOINT=endpoint)
    finally:
        server.shutdown()
        server.server_close()
    assert proc.returncode == 0, proc.stderr
    # the one request without retries, then timm's own: its metadata and the download
    asked = [s for s in FakeHub.seen if "model.safetensors" in s]
    assert asked[0].startswith("HEAD") and any(s.startswith("GET") for s in asked), FakeHub.seen
    assert json.loads(proc.stdout)["ancestor_sha256"] == hashlib.sha256(served).hexdigest()  # the served weights
