"""VLM review against a real OpenAI-compatible chat-completions server on loopback (real sockets, JSON)."""

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from PIL import Image
from synthetic_clips import lid_box, write_clip

from dataset_tools.curate import main
from dataset_tools.id_lists import read_id_list
from dataset_tools.vlm_review import CRITERIA, VLMConfig, VLMError, parse_decision, post_chat

API_KEY = "sk-test-loopback"


class ChatServer(ThreadingHTTPServer):
    """Speaks /v1/chat/completions; decides by looking at the images: no change -> drop (static)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ChatHandler)
        self.requests: list[dict] = []
        self.fail_next: list[int] = []  # HTTP statuses to answer before answering normally

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class ChatHandler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        server: ChatServer = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if self.headers.get("Authorization") != f"Bearer {API_KEY}":
            return self._send(401, {"error": {"message": "bad key"}})
        server.requests.append(body)
        if server.fail_next:
            return self._send(server.fail_next.pop(0), {"error": {"message": "busy"}})
        user = body["messages"][-1]["content"]
        text = next(part["text"] for part in user if part["type"] == "text")
        urls = [part["image_url"]["url"] for part in user if part["type"] == "image_url"]
        assert all(key in text for key in CRITERIA)
        images = [
            np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1]))).convert("RGB"), dtype=float)
            for u in urls
        ]
        change = max((np.abs(img - images[0]).mean() for img in images), default=0.0)
        answer = (
            {"drop": True, "reasons": ["static_or_whole_object"], "explanation": "nothing moves"}
            if change < 1.0
            else {"drop": False, "reasons": [], "explanation": "the lid opens"}
        )
        content = f"```json\n{json.dumps(answer)}\n```" if len(urls) == 4 else "four images please"
        self._send(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )


@pytest.fixture
def server():
    srv = ChatServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=5)


def _strip(folder, moving: bool, rgba: bool = False, colour=(200, 40, 40)):
    (folder / "review").mkdir(parents=True, exist_ok=True)
    for i in range(4):
        image = Image.new("RGBA" if rgba else "RGB", (32, 32), (255, 255, 255, 0) if rgba else (255, 255, 255))
        y = 20 - 4 * i if moving else 20
        image.paste((*colour, 255) if rgba else colour, (8, y, 24, y + 6))
        image.save(folder / "review" / f"{i}.png")


def _root(tmp_path):
    root = tmp_path / "renders"
    _strip(write_clip(root / "aaa" / "open", lid_box(t=8)), moving=True)
    _strip(write_clip(root / "bbb" / "idle", lid_box(t=8)), moving=False, rgba=True)
    _strip(write_clip(root / "ccc" / "wave", lid_box(t=8)), moving=True, rgba=True, colour=(40, 40, 200))
    return root


def _review(root, server, *extra):
    return main(
        ["review", str(root), "--base-url", server.base_url, "--vlm-model", "test-vlm", "--api-key-env", "PM_TEST_VLM_KEY",
         "--no-progress", "--out-list", str(root / "hq.json"), "--clip-list", str(root / "hq_clips.json"), *extra]
    )


def test_review_over_loopback_with_cache(tmp_path, server, monkeypatch):
    monkeypatch.setenv("PM_TEST_VLM_KEY", API_KEY)
    root = _root(tmp_path)
    assert _review(root, server) == 0
    assert len(server.requests) == 3
    request = server.requests[0]
    assert request["model"] == "test-vlm" and request["messages"][0]["role"] == "system"
    assert read_id_list(root / "hq.json") == ["aaa", "ccc"]
    assert read_id_list(root / "hq_clips.json") == ["aaa/open", "ccc/wave"]
    decisions = [json.loads(line) for line in (root / "vlm_decisions.jsonl").read_text().splitlines()]
    assert [d["drop"] for d in decisions] == [False, True, False]
    assert decisions[1]["reasons"] == ["static_or_whole_object"]
    # a rerun answers from the cache: no request
    assert _review(root, server) == 0
    assert len(server.requests) == 3
    assert all(json.loads(line)["cached"] for line in (root / "vlm_decisions.jsonl").read_text().splitlines())
    # a changed image is asked again
    _strip(root / "bbb" / "idle", moving=True, colour=(40, 160, 40))
    assert _review(root, server) == 0
    assert len(server.requests) == 4
    assert read_id_list(root / "hq.json") == ["aaa", "bbb", "ccc"]


def test_only_listed_clips_are_reviewed(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("PM_TEST_VLM_KEY", API_KEY)
    root = _root(tmp_path)
    (root / "in.json").write_text(json.dumps(["ccc/wave", "zzz/gone"]))
    assert _review(root, server, "--clips", str(root / "in.json")) == 0
    assert "1 listed clips are not under" in capsys.readouterr().err
    assert len(server.requests) == 1
    assert read_id_list(root / "hq.json") == ["ccc"]


def test_nothing_is_sent_unless_configured(tmp_path, server, capsys):
    root = _root(tmp_path)
    assert main(["review", str(root), "--no-progress", "--vlm-model", "x"]) == 1
    assert "not configured" in capsys.readouterr().err
    assert server.requests == []


def test_wrong_key_is_reported_and_the_batch_goes_on(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("PM_TEST_VLM_KEY", "wrong")
    root = _root(tmp_path)
    assert _review(root, server) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err and err.count("review failed") == 3
    assert read_id_list(root / "hq.json") == []


def test_transient_errors_are_retried(server, monkeypatch):
    monkeypatch.setenv("PM_TEST_VLM_KEY", API_KEY)
    config = VLMConfig(server.base_url, "m", api_key_env="PM_TEST_VLM_KEY", backoff_s=0.01, max_retries=2)
    server.fail_next = [503, 429]
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": " ".join(CRITERIA)}]}]}
    assert post_chat(config, body) == "four images please"
    assert len(server.requests) == 3
    server.fail_next = [503, 503, 503]
    with pytest.raises(VLMError, match=r"HTTP 503.*gave up after 3 tries"):
        post_chat(config, body)
    dead = VLMConfig("http://127.0.0.1:9/v1", "m", backoff_s=0.01, max_retries=0, timeout_s=2)
    with pytest.raises(VLMError, match="cannot reach"):
        post_chat(dead, body)


def test_parse_decision_forms():
    assert parse_decision('{"drop": false, "reasons": [], "explanation": "fine"}') == (False, [], "fine")
    assert parse_decision('Sure:\n```json\n{"drop": true, "reasons": ["leaves_frame", "made_up"]}\n```')[:2] == (
        True,
        ["leaves_frame"],
    )
    assert parse_decision("DROP - the object is static")[0] is True
    with pytest.raises(VLMError, match="cannot read a keep/drop decision"):
        parse_decision("I am not sure what I see")
