"""What the broker reads off messages before (or instead of) trusting them: whether a submitted
PNG decodes, whether a worker's result is the frames it should be, and the request id and type of
a message that failed to decode (so that even a broken message gets an answer naming its request)."""

from __future__ import annotations

import io
import json
from typing import Any

from puppet_master import protocol
from puppet_master.protocol import ProtocolError


def check_image_decodes(png: bytes) -> None:
    """Refuse a submitted image that is not a PNG or whose structure is broken (bad_image)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(png)) as image:
            if image.format != "PNG":
                raise ProtocolError(protocol.BAD_IMAGE, f"the image must be a PNG, got {image.format}")
            image.verify()  # chunk structure and CRCs; the worker decodes the pixels
    except ProtocolError:
        raise
    except Exception as exc:  # PIL raises many kinds for corrupt data
        raise ProtocolError(protocol.BAD_IMAGE, f"the PNG cannot be decoded: {exc}") from None


def check_result_frames(frames: list[bytes], count: int, side: int) -> None:
    """Refuse a worker's result unless it is ``count`` PNGs of ``side`` x ``side`` pixels with
    sound chunk structure and CRCs (a worker bug or a forged result is never stored)."""
    from PIL import Image

    if len(frames) != count:
        raise ProtocolError(protocol.BAD_IMAGE, f"{len(frames)} frames instead of {count}")
    for index, data in enumerate(frames):
        try:
            size = protocol.png_size(data)  # the signature and header, before PIL reads anything
        except ProtocolError as exc:
            raise ProtocolError(protocol.BAD_IMAGE, f"frame {index}: {exc.message}") from None
        if size != (side, side):
            raise ProtocolError(protocol.BAD_IMAGE, f"frame {index} is {size[0]}x{size[1]}, not {side}x{side}")
        try:
            with Image.open(io.BytesIO(data)) as image:
                image.verify()
        except Exception as exc:  # PIL raises many kinds for corrupt data
            raise ProtocolError(protocol.BAD_IMAGE, f"frame {index} is not a sound PNG: {exc}") from None


def best_effort_header(frames: list[bytes]) -> dict[str, Any]:
    """The header of a message that failed to decode, as far as it can be read ({} otherwise)."""
    try:
        header = json.loads(bytes(frames[0])) if frames and len(frames[0]) <= protocol.MAX_HEADER_BYTES else {}
    except (ValueError, RecursionError):
        return {}
    return header if isinstance(header, dict) else {}


def best_effort_req(frames: list[bytes]) -> str:
    """The request id of a message that failed to decode, for the error reply (or "unknown")."""
    req = best_effort_header(frames).get("req")
    return req if protocol.is_request_id(req) else "unknown"


def best_effort_type(frames: list[bytes]) -> Any:
    """The type of a message that failed to decode, if it can be read."""
    return best_effort_header(frames).get("type")
