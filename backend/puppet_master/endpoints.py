"""Endpoints in ZeroMQ's form, checked once for every command and the add-on (standard library only)."""

from __future__ import annotations


class EndpointError(ValueError):
    """An endpoint that is not ``tcp://HOST:PORT`` (or ``ipc://PATH``); the message shows the form."""


_ENDPOINT_FORM = "expected tcp://HOST:PORT, e.g. tcp://127.0.0.1:5555 (or ipc://PATH on one machine)"


def normalize_endpoint(endpoint: str, *, bind: bool = False) -> str:
    """``endpoint`` checked and in ZeroMQ's form: surrounding spaces removed, ``HOST:PORT`` given
    ``tcp://``; a missing or bad port, an empty host or another transport is an :class:`EndpointError`
    naming the expected form. ``bind`` allows the host ``*`` (every interface) and the port ``*``
    (one the system picks)."""
    text = str(endpoint).strip()
    if not text:
        raise EndpointError(f"the endpoint is empty: {_ENDPOINT_FORM}")
    if "://" not in text:
        text = "tcp://" + text
    transport, _, rest = text.partition("://")
    if transport == "ipc":
        if not rest:
            raise EndpointError(f"{endpoint!r} has no path: {_ENDPOINT_FORM}")
        return text
    if transport != "tcp":
        raise EndpointError(f"{endpoint!r} uses the transport {transport!r}: {_ENDPOINT_FORM}")
    if rest.startswith("["):  # IPv6: tcp://[::1]:5555
        host, _, port = rest[1:].partition("]")
        port = port[1:] if port.startswith(":") else ""
    elif ":" not in rest:
        raise EndpointError(f"{endpoint!r} has no port: {_ENDPOINT_FORM}")
    else:
        host, _, port = rest.rpartition(":")
    if not host or any(c.isspace() for c in host) or "/" in host or (host == "*" and not bind):
        raise EndpointError(f"{endpoint!r} has no usable host: {_ENDPOINT_FORM}")
    if bind and port == "*":  # a port the system picks
        return text
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise EndpointError(f"{endpoint!r} has no port (1-65535): {_ENDPOINT_FORM}")
    return text
