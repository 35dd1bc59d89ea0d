"""A model worker: a DEALER connected to the broker's backend, running one job at a time.

The main thread owns the socket: it answers heartbeats, takes JOB/CANCEL/UNLOAD/SHUTDOWN, and
forwards what the generation thread reports over an inproc PUSH/PULL pair (zmq sockets are not
shared between threads). If the broker stays silent for ``broker_timeout_s`` the worker drops its
job and reconnects with a new identity (Paranoid Pirate), so a restarted broker gets it back.
"""

from __future__ import annotations

import gc
import logging
import os
import socket as socket_module
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from puppet_master import protocol
from puppet_master.protocol import JobSettings, ProtocolError
from puppet_master.server import generation

log = logging.getLogger(__name__)

WORKER_POLL_MS = 50  # longest the main loop sleeps between checks
RECONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 4.0)  # waits before successive reconnects


class WorkerLoop:
    """Serve jobs from the broker at ``connect`` with the pipeline ``load_pipeline()`` returns."""

    def __init__(
        self,
        connect: str,
        load_pipeline: Callable[[], Any],
        info: dict[str, Any],
        *,
        server_public_key: bytes | None = None,
        secret: str | None = None,
        heartbeat_interval_s: float = protocol.HEARTBEAT_INTERVAL_S,
        broker_timeout_s: float = protocol.PEER_TIMEOUT_S,
        context: zmq.Context | None = None,
    ) -> None:
        self.connect = connect
        self._load_pipeline = load_pipeline
        self.pipe: Any = None
        self.info = {"host": socket_module.gethostname(), "pid": os.getpid(), **info}
        self.info.setdefault("id", f"{self.info['host']}:{self.info['pid']}")
        self._server_key = server_public_key
        self._secret = secret
        #: why the broker refused this worker (a wrong secret, an id in use), once it did
        self.refused: str | None = None
        self.heartbeat_interval_s = heartbeat_interval_s
        self.broker_timeout_s = broker_timeout_s
        self._context = context or zmq.Context.instance()
        self._events_endpoint = f"inproc://worker-events-{id(self)}"
        self._events = self._context.socket(zmq.PULL)
        self._events.bind(self._events_endpoint)
        self._socket: zmq.Socket | None = None
        self._thread: threading.Thread | None = None
        self._job: str | None = None
        self._cancel = threading.Event()
        self._unload_after_job = False
        self._reconnects = 0
        self._shutdown_requested = False
        self._waiting_job: protocol.Message | None = None  # a JOB taken while the last preview is made

    def load(self) -> None:
        """Load the model now (before READY, so a broken model fails at start)."""
        if self.pipe is None:
            started = time.monotonic()
            self.pipe = self._load_pipeline()
            log.info("model loaded in %.1f s", time.monotonic() - started)

    # --- the loop ------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        self.load()
        self._open()
        try:
            while not should_stop():
                poller = zmq.Poller()
                poller.register(self._socket, zmq.POLLIN)
                poller.register(self._events, zmq.POLLIN)
                ready = dict(poller.poll(WORKER_POLL_MS))
                if self._events in ready:
                    self._forward_events()
                if self._socket in ready:
                    self._on_broker()
                self._housekeeping()
                if self._waiting_job is not None and not self._thread.is_alive():
                    self._start_thread(self._waiting_job)
                if self._shutdown_requested:
                    log.info("the broker asked this worker to stop")
                    break
        finally:
            self._cancel.set()
            if self._socket is not None and not self._socket.closed:
                self._send(protocol.SHUTDOWN)
            if self._thread is not None:
                self._thread.join(timeout=30)
            if self._socket is not None:
                self._socket.close(linger=0)
            self._events.close(linger=0)

    def _open(self) -> None:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        sock.setsockopt(zmq.ROUTING_ID, f"w-{self.info['id']}-{os.urandom(4).hex()}".encode())
        if self._server_key:
            sock.curve_serverkey = self._server_key
            sock.curve_publickey, sock.curve_secretkey = zmq.curve_keypair()
        sock.connect(self.connect)
        self._socket = sock
        self._last_heard = self._last_sent = self._last_loop = time.monotonic()
        self._send(protocol.READY, {"worker": self.info, "secret": self._secret})
        log.info("worker %s connected to %s", self.info["id"], self.connect)

    def _send(self, type_: str, fields: dict[str, Any] | None = None, blobs: list[bytes] | tuple = ()) -> None:
        try:
            self._socket.send_multipart(protocol.encode(type_, fields, blobs), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("could not send %s: the broker is not taking messages", type_)
        self._last_sent = time.monotonic()

    def _on_broker(self) -> None:
        frames = self._socket.recv_multipart()
        self._last_heard = time.monotonic()
        try:
            message = protocol.decode(frames, protocol.BROKER_TO_WORKER_TYPES)
        except ProtocolError as exc:
            log.warning("bad message from the broker: %s", exc)
            return
        if message.type == protocol.JOB:
            self._start_job(message)
        elif message.type == protocol.CANCEL and message.header["job"] == self._job:
            if self._waiting_job is not None:  # not started yet
                self._waiting_job = self._job = None
                self._send(protocol.CANCELLED, {"job": message.header["job"]})
            else:
                self._cancel.set()
        elif message.type == protocol.UNLOAD:
            if self._job is None:
                self._unload()
            else:
                self._unload_after_job = True
        elif message.type == protocol.SHUTDOWN:
            self._shutdown_requested = True
            self.refused = message.get("reason")

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now - self._last_heard > self.broker_timeout_s:
            # this loop may itself have been starved of CPU: read what arrived meanwhile first
            while self._socket.poll(0, zmq.POLLIN):
                self._on_broker()
        if now - self._last_heard > self.broker_timeout_s:
            log.warning("no heartbeat from the broker for %.1f s (loop last ran %.1f s ago): reconnecting",
                        now - self._last_heard, now - self._last_loop)
            self._cancel.set()  # the broker has given this job up
            if self._thread is not None:
                self._thread.join(timeout=60)
            self._forward_events()
            self._job = self._waiting_job = None
            self._socket.close(linger=0)
            time.sleep(RECONNECT_BACKOFF_S[min(self._reconnects, len(RECONNECT_BACKOFF_S) - 1)])
            self._reconnects += 1
            self._open()
            return
        self._reconnects = 0
        if now - self._last_sent >= self.heartbeat_interval_s:
            self._send(protocol.HEARTBEAT)
        self._last_loop = now

    # --- jobs ----------------------------------------------------------------------------------
    def _start_job(self, message: protocol.Message) -> None:
        job_id = message.header["job"]
        if self._job is not None or self._waiting_job is not None:
            self._send(protocol.ERROR, {"job": job_id, "code": protocol.INTERNAL,
                                        "message": f"worker {self.info['id']} is still busy with another job"})
            return
        self._job = job_id
        if self._thread is not None and self._thread.is_alive():  # finishing the last job's preview
            self._waiting_job = message
            return
        self._start_thread(message)

    def _start_thread(self, message: protocol.Message) -> None:
        job_id = message.header["job"]
        self._waiting_job = None
        self._cancel = threading.Event()
        self._thread = threading.Thread(
            target=self._generate, args=(job_id, message, self._cancel), name=f"job-{job_id[:8]}", daemon=True
        )
        self._thread.start()

    def _generate(self, job_id: str, message: protocol.Message, cancel: threading.Event) -> None:
        out = self._context.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 1000)
        out.connect(self._events_endpoint)

        def emit(type_: str, fields: dict[str, Any], blobs: list[bytes] | tuple = ()) -> None:
            out.send_multipart(protocol.encode(type_, {"job": job_id, **fields}, blobs))

        def on_progress(step: int, total: int, eta: float | None, elapsed: float, preview: bytes | None) -> None:
            emit(protocol.PROGRESS, {"step": step, "total": total, "eta_s": eta, "elapsed_s": elapsed},
                 [preview] if preview else [])

        try:
            settings = JobSettings.from_json(message.header["settings"])
            drags = protocol.check_drags(message.header["drags"], frames=settings.frames_per_variant)
            self.load()
            result = generation.run_job(
                self.pipe, message.blobs[0], drags, settings, on_progress=on_progress, cancel=cancel,
                on_variant=lambda index, seed, pngs: emit(protocol.VARIANT, {"index": index, "seed": seed}, pngs))
            info = {"model_s": result.model_s, "encode_s": result.encode_s, "model": self.info.get("model"),
                    "untrained": bool(self.info.get("untrained"))}
            emit(protocol.RESULT, {"settings": result.settings, "info": info}, result.frames_png)
            # the results folder's preview.gif: made beside the next job, off every job's latency
            first = result.frames_png[:settings.frames_per_variant]  # the GIF shows the first variant
            threading.Thread(target=self._make_preview, args=(job_id, first, drags if settings.segments == 1 else []),
                             name=f"preview-{job_id[:8]}", daemon=True).start()
        except generation.JobCancelledError:
            emit(protocol.CANCELLED, {})
        except ProtocolError as exc:
            emit(protocol.ERROR, {"code": exc.code, "message": exc.message})
        except Exception as exc:
            log.exception("job %s failed", job_id)
            emit(protocol.ERROR, {"code": protocol.GENERATION_FAILED, "message": f"{type(exc).__name__}: {exc}"})
        finally:
            out.close()

    def _make_preview(self, job_id: str, frames_png: list[bytes], drags: list[dict[str, list[float]]]) -> None:
        out = self._context.socket(zmq.PUSH)
        out.setsockopt(zmq.LINGER, 1000)
        out.connect(self._events_endpoint)
        try:
            gif = generation.preview_gif(frames_png, drags)
            out.send_multipart(protocol.encode(protocol.PREVIEW_GIF, {"job": job_id}, [gif]))
        except Exception:
            log.exception("job %s: could not make preview.gif", job_id)
        finally:
            out.close()

    def _forward_events(self) -> None:
        while True:
            try:
                frames = self._events.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            message = protocol.decode(frames, protocol.WORKER_TYPES)
            if message.type in (protocol.RESULT, protocol.ERROR, protocol.CANCELLED):
                self._job = None
                if self._unload_after_job:
                    self._unload()
            if message.get("job") is not None:
                self._send(message.type, {k: v for k, v in message.header.items() if k not in ("v", "type")},
                           message.blobs)

    def _unload(self) -> None:
        self._unload_after_job = False
        if self.pipe is None:
            return
        self.pipe = None
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:
            pass
        log.info("model unloaded")
        self._send(protocol.UNLOADED)
