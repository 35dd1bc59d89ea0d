"""Loopback by default; a public bind needs CURVE keys; with CURVE, a client without the key gets nothing."""

import subprocess
import sys
import threading
import time

import pytest
import zmq

from puppet_master import client as pm
from puppet_master import protocol
from puppet_master.server import security
from puppet_master.server.broker import Broker
from puppet_master.server.store import ResultStore


@pytest.mark.parametrize(
    ("endpoint", "local"),
    [("tcp://127.0.0.1:5555", True), ("tcp://127.3.4.5:1", True), ("tcp://localhost:5555", True),
     ("tcp://[::1]:5555", True), ("ipc:///tmp/pm.sock", True), ("tcp://0.0.0.0:5555", False),
     ("tcp://*:5555", False), ("tcp://192.168.1.20:5555", False), ("tcp://eth0:5555", False),
     ("tcp://example.org:5555", False), ("udp://127.0.0.1:1", False)],
)
def test_endpoint_is_local(endpoint, local):
    assert security.endpoint_is_local(endpoint) is local


def test_public_bind_without_keys_is_refused_with_a_reason(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "puppet_master", "serve", "--bind", "tcp://0.0.0.0:5599", "--results", str(tmp_path),
         "--tiny"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert "refusing to listen on tcp://0.0.0.0:5599" in out.stderr and "--curve-secret" in out.stderr
    assert not (tmp_path / "index.json").exists()  # refused before anything started
    # a malformed bind is named as such (not as a security problem), with the expected form
    out = subprocess.run(
        [sys.executable, "-m", "puppet_master", "serve", "--bind", "tcp://127.0.0.1", "--results", str(tmp_path),
         "--tiny"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert "--bind: 'tcp://127.0.0.1' has no port: expected tcp://HOST:PORT" in out.stderr
    assert security.check_bind(" localhost:5555", None) == "tcp://localhost:5555"  # loopback: no keys needed


@pytest.fixture
def curve_broker(tmp_path):
    public_file, secret_file = security.create_keys(tmp_path / "keys")
    keys = security.load_secret(secret_file)
    context = zmq.Context()
    broker = Broker(ResultStore(tmp_path / "results"), frontend="tcp://127.0.0.1:*", curve_keys=keys, context=context)
    stop = threading.Event()
    thread = threading.Thread(target=broker.run, args=(stop.is_set,), daemon=True)
    thread.start()
    yield broker, public_file, context
    stop.set()
    thread.join(timeout=10)
    context.term()


def _answers(broker, context, timeout_s=2.0, **kwargs) -> list:
    with pm.GenerationClient(broker.frontend_endpoint, context=context, server_timeout_s=timeout_s, **kwargs) as c:
        c.ping()
        c.status()
        events, deadline = [], time.monotonic() + timeout_s + 0.5
        while time.monotonic() < deadline:
            events += c.poll(timeout_ms=50)
    return events


def test_curve_client_with_the_key_is_served_and_others_get_nothing(curve_broker, tmp_path):
    broker, public_file, context = curve_broker
    good = _answers(broker, context, server_public_key=security.load_public(str(public_file)))
    assert any(isinstance(e, pm.Pong) and e.server["protocol"] == protocol.PROTOCOL_VERSION for e in good)
    assert any(isinstance(e, pm.StatusReply) for e in good)

    plain = _answers(broker, context)  # no key at all
    wrong_public, _ = zmq.curve_keypair()
    wrong = _answers(broker, context, server_public_key=wrong_public)  # a key, but not the server's
    for events in (plain, wrong):
        assert not [e for e in events if isinstance(e, pm.Pong | pm.StatusReply)]
        assert any(isinstance(e, pm.ConnectionLost) for e in events)


def test_keys_cli_and_key_loading(tmp_path):
    out = subprocess.run([sys.executable, "-m", "puppet_master", "keys", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    printed = out.stdout.split("public key: ", 1)[1].strip()
    assert security.load_public(printed) == security.load_public(str(tmp_path / "server.key"))
    assert (tmp_path / "server.key_secret").stat().st_mode & 0o077 == 0
    assert (tmp_path / "worker.secret").stat().st_mode & 0o077 == 0
    assert len(security.read_worker_secret(tmp_path / "worker.secret")) == 64
    with pytest.raises(security.SecurityError, match="does not hold a worker secret"):
        security.read_worker_secret(tmp_path / "server.key")
    with pytest.raises(security.SecurityError, match="no secret key"):
        security.load_secret(tmp_path / "server.key")
    with pytest.raises(security.SecurityError):
        security.load_public("not a key")


def test_serve_starts_workers_with_its_model_options():
    from puppet_master.cli import build_parser
    from puppet_master.cli.serve import model_option_argv

    args = build_parser().parse_args(["serve", "--tiny", "--dtype", "float32", "--device", "cpu", "--workers", "2"])
    argv = model_option_argv(args)
    assert argv[argv.index("--dtype") + 1] == "float32" and argv[argv.index("--device") + 1] == "cpu"
    assert "--tiny" in argv and "--workers" not in argv
    worker_args = build_parser().parse_args(["worker", "--connect", "tcp://127.0.0.1:1", *argv])
    assert (worker_args.tiny, worker_args.dtype, worker_args.device) == (True, "float32", "cpu")
