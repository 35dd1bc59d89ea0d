"""VLM review (paper Sec. 4, filter 2) over any OpenAI-compatible chat-completions endpoint.

Four front-view frames at the quarters of a clip go to a vision-language model with the paper's
seven reasons to drop a clip; the model answers keep or drop in JSON. Nothing is sent unless a base
URL and a model are configured. Decisions are cached on disk, keyed by the model, the prompt
version and the bytes of the four images, so a rerun only asks about new or changed clips.
Standard library only (urllib).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROMPT_VERSION = 1
#: the paper's seven reasons to drop a clip (key -> what the model is asked)
CRITERIA = {
    "static_or_whole_object": "the object is static, or it only moves as a whole (no part moves relative to the rest)",
    "small_part_in_scene": "it is a scene or a large object in which only a small part moves",
    "implausible_motion": "the motion is implausible for this object",
    "leaves_frame": "the object or a part of it leaves the frame",
    "colour_change": "colours or textures change instead of (or besides) shapes moving",
    "parts_detach": "parts detach, fly off or appear out of nowhere",
    "chaotic_motion": "the motion is chaotic or too fast to follow",
}
SYSTEM_PROMPT = (
    "You review animated 3D assets for a dataset of part-level object motion: a part of an object "
    "(a door, a lid, a limb, a tail) moves while the rest of the object stays in place."
)
USER_PROMPT = (
    "These four images are renders of one animated 3D asset from the same front camera, at the "
    "quarters of its animation, in time order. Drop the animation if ANY of these holds:\n"
    + "\n".join(f"- {key}: {text}" for key, text in CRITERIA.items())
    + "\nOtherwise keep it. Answer with JSON only, no other text: "
    '{"drop": true or false, "reasons": [keys from the list above that hold], "explanation": "one sentence"}'
)
HTTP_RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 3
DEFAULT_BACKOFF_S = 2.0
REVIEW_IMAGES = 4


class VLMError(RuntimeError):
    """The endpoint could not be reached, refused the request, or gave an answer we cannot read."""


@dataclass
class VLMConfig:
    """Where and how to ask. ``base_url`` ends before ``/chat/completions`` (e.g. ``http://host:8000/v1``)."""

    base_url: str
    model: str
    api_key_env: str | None = "OPENAI_API_KEY"
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_retries: int = DEFAULT_RETRIES
    backoff_s: float = DEFAULT_BACKOFF_S
    max_tokens: int = 300
    temperature: float = 0.0

    def __post_init__(self) -> None:
        if not self.base_url or not self.model:
            raise VLMError("VLM review is not configured: give both a base URL and a model name")
        if not self.base_url.startswith(("http://", "https://")):
            raise VLMError(f"VLM base URL must start with http:// or https://, got {self.base_url!r}")

    @property
    def endpoint(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) if self.api_key_env else None


@dataclass
class Decision:
    clip_id: str
    drop: bool
    reasons: list[str] = field(default_factory=list)
    explanation: str = ""
    cached: bool = False

    def to_json(self) -> dict:
        return {"clip_id": self.clip_id, "drop": self.drop, "reasons": self.reasons, "explanation": self.explanation}


def _data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def build_request(config: VLMConfig, images: list[bytes]) -> dict:
    """The chat-completions request body: system prompt, then the text and the four images."""
    content: list[dict] = [{"type": "text", "text": USER_PROMPT}]
    content += [{"type": "image_url", "image_url": {"url": _data_url(png)}} for png in images]
    return {
        "model": config.model,
        "messages": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}],
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }


def post_chat(config: VLMConfig, body: dict) -> str:
    """POST a chat-completions request and return the first choice's text (retries transient failures)."""
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = config.api_key()
    if key:
        headers["Authorization"] = f"Bearer {key}"
    last_error = ""
    for attempt in range(config.max_retries + 1):
        if attempt:
            time.sleep(config.backoff_s * 2 ** (attempt - 1))
        request = urllib.request.Request(config.endpoint, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=config.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            last_error = f"HTTP {exc.code} from {config.endpoint}: {detail}"
            if exc.code in HTTP_RETRY_STATUS:
                continue
            raise VLMError(last_error) from exc
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last_error = f"cannot reach {config.endpoint}: {getattr(exc, 'reason', exc)}"
            continue
        try:
            answer = json.loads(payload)
            message = answer["choices"][0]["message"]["content"]
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
            raise VLMError(f"{config.endpoint} did not answer in the chat-completions format: {payload[:200]!r}") from exc
        if isinstance(message, list):  # some servers return content parts
            message = "".join(part.get("text", "") for part in message if isinstance(part, dict))
        if not isinstance(message, str):
            raise VLMError(f"{config.endpoint}: the answer's message content is not text")
        return message
    raise VLMError(f"{last_error} (gave up after {config.max_retries + 1} tries)")


def parse_decision(text: str) -> tuple[bool, list[str], str]:
    """Read ``drop``, ``reasons`` and ``explanation`` from the model's answer (JSON, maybe fenced)."""
    match = re.search(r"\{.*\}", text, flags=re.DOTALL)
    if match:
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("drop"), bool | str):
            drop = data["drop"]
            if isinstance(drop, str):
                drop = drop.strip().lower() in {"true", "yes", "drop", "1"}
            reasons = [str(r) for r in data.get("reasons", []) if str(r) in CRITERIA]
            return bool(drop), reasons, str(data.get("explanation", ""))
    word = re.match(r"\W*(keep|drop)\b", text.strip(), flags=re.IGNORECASE)
    if word:
        return word.group(1).lower() == "drop", [], text.strip()[:300]
    raise VLMError(f"cannot read a keep/drop decision from the model's answer: {text[:200]!r}")


def cache_key(config: VLMConfig, images: list[bytes]) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"model": config.model, "prompt": PROMPT_VERSION}).encode())
    for png in images:
        digest.update(hashlib.sha256(png).digest())
    return digest.hexdigest()


class ReviewCache:
    """Decisions on disk: ``<folder>/<key[:2]>/<key>.json``, one file per (model, prompt, images)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            path.unlink(missing_ok=True)  # a torn or corrupt entry is asked again
            return None

    def put(self, key: str, record: dict) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(record, indent=1))
        tmp.replace(path)


def review_images(images: list[bytes], clip_id: str, config: VLMConfig, cache: ReviewCache | None) -> Decision:
    """Ask the model about one clip's four images, or answer from the cache."""
    if len(images) != REVIEW_IMAGES:
        raise VLMError(f"{clip_id}: the review takes {REVIEW_IMAGES} images, got {len(images)}")
    key = cache_key(config, images)
    if cache is not None:
        record = cache.get(key)
        if record is not None:
            return Decision(clip_id, bool(record["drop"]), list(record["reasons"]), record["explanation"], cached=True)
    answer = post_chat(config, build_request(config, images))
    drop, reasons, explanation = parse_decision(answer)
    if cache is not None:
        cache.put(
            key,
            {
                "clip_id": clip_id,
                "model": config.model,
                "prompt_version": PROMPT_VERSION,
                "drop": drop,
                "reasons": reasons,
                "explanation": explanation,
                "answer": answer,
                "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
    return Decision(clip_id, drop, reasons, explanation)
