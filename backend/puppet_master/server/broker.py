"""The broker: clients on a ROUTER frontend, workers on a ROUTER backend, a bounded FIFO between.

One thread runs :meth:`Broker.run`: it polls both sockets with a timeout, answers clients,
hands the oldest waiting job to the worker idle longest, forwards workers' progress and final
events to every client watching the job, writes results to the :class:`ResultStore`, and
declares a worker lost when it misses heartbeats (or its local process exits), ending its job
with ``worker_lost``. It never imports torch: a model crash cannot take it down.
"""

from __future__ import annotations

import logging
import socket as socket_module
import time
from collections.abc import Callable
from typing import Any

import zmq

from puppet_master import __version__, protocol
from puppet_master.protocol import Message, ProtocolError
from puppet_master.server.admission import WorkerGate
from puppet_master.server.inbound import (
    best_effort_req,
    best_effort_type,
    check_image_decodes,
    check_result_frames,
)
from puppet_master.server.jobs import Job, JobQueue, Worker, owns, token_hash
from puppet_master.server.local_workers import LocalWorkers
from puppet_master.server.outbound import ClientSender
from puppet_master.server.recovery import job_record, recover_jobs
from puppet_master.server.store import MIN_FREE_BYTES, ResultStore, is_disk_full

log = logging.getLogger(__name__)

POLL_INTERVAL_MS = 100  # longest the loop sleeps before housekeeping
MAX_MESSAGES_PER_TURN = 200  # per socket, so neither side starves the other
FRONTEND_RCVHWM = 100  # messages queued from clients (each may be 32 MiB)


class Broker:
    """Accepts clients on ``frontend`` and workers on ``backend`` (``*`` picks a free port).

    ``worker_secret``: what a worker's READY must carry to be given jobs (``serve`` always sets
    one; None accepts any worker, for tests of the broker alone). ``allow_unload``: whether
    clients may ask the workers to free their model.
    """

    def __init__(
        self,
        store: ResultStore,
        *,
        frontend: str = protocol.DEFAULT_ENDPOINT,
        backend: str = "tcp://127.0.0.1:*",
        curve_keys: tuple[bytes, bytes] | None = None,
        max_queue: int = protocol.DEFAULT_MAX_QUEUE,
        worker_timeout_s: float = protocol.WORKER_TIMEOUT_S,
        heartbeat_interval_s: float = protocol.HEARTBEAT_INTERVAL_S,
        context: zmq.Context | None = None,
        worker_secret: str | None = None,
        allow_unload: bool = False,
    ) -> None:
        self.store = store
        self.gate = WorkerGate(worker_secret)
        self.allow_unload = allow_unload
        self._requests = 0  # client messages handled since the start (`server.requests`)
        self.queue = JobQueue(max_queue)
        self.running: dict[str, Job] = {}
        self.workers: dict[bytes, Worker] = {}
        self.supervisor: LocalWorkers | None = None  # the worker processes `serve` started
        self.worker_timeout_s = worker_timeout_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self._context = context or zmq.Context.instance()
        self._curve_keys = curve_keys
        self._start_count = 0
        self._stopping = False
        self.frontend = self._bind(frontend)
        self.frontend.setsockopt(zmq.SNDHWM, protocol.CLIENT_SNDHWM)
        self.clients = ClientSender(self.frontend)
        self.backend = self._bind(backend)
        self.frontend_endpoint = self.frontend.getsockopt_string(zmq.LAST_ENDPOINT)
        self.backend_endpoint = self.backend.getsockopt_string(zmq.LAST_ENDPOINT)
        for job in recover_jobs(store):
            self.queue.push(job)

    def _bind(self, endpoint: str) -> zmq.Socket:
        sock = self._context.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, protocol.MAX_FRAME_BYTES)
        sock.setsockopt(zmq.RCVHWM, FRONTEND_RCVHWM)
        if self._curve_keys is not None:
            sock.curve_publickey, sock.curve_secretkey = self._curve_keys
            sock.curve_server = True
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close(linger=0)
            raise OSError(f"cannot bind {endpoint}: {exc}") from exc
        return sock

    # --- the loop ------------------------------------------------------------------------------
    def run(self, should_stop: Callable[[], bool]) -> None:
        """Serve until ``should_stop()`` is true, then shut down cleanly."""
        poller = zmq.Poller()
        poller.register(self.frontend, zmq.POLLIN)
        poller.register(self.backend, zmq.POLLIN)
        log.info("serving clients on %s, workers on %s", self.frontend_endpoint, self.backend_endpoint)
        while not should_stop():
            ready = dict(poller.poll(POLL_INTERVAL_MS))
            if self.backend in ready:
                self._drain(self.backend, self._on_worker_message)
            if self.frontend in ready:
                self._drain(self.frontend, self._on_client_message)
            try:
                self._housekeeping()
            except OSError as exc:  # e.g. a full results disk: the loop, and every other job, goes on
                log.error("housekeeping failed: %s", exc)
        self.shutdown()

    def _drain(self, sock: zmq.Socket, handler: Callable[[bytes, list[bytes]], None]) -> None:
        for _ in range(MAX_MESSAGES_PER_TURN):
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity, payload = frames[0], frames[1:]
            try:
                handler(identity, payload)
            except Exception:  # a bug must not stop the server: log it and answer
                log.exception("error while handling a message")
                if sock is self.frontend:
                    self.clients.fail(identity, best_effort_req(payload), protocol.INTERNAL, "internal server error")

    def shutdown(self) -> None:
        """Tell workers to stop. Unfinished jobs stay queued/running in the store: the next
        start runs them again."""
        self._stopping = True
        for worker in self.workers.values():
            self._send_worker(worker, protocol.SHUTDOWN)
        if self.supervisor is not None:
            self.supervisor.stop()
        self.frontend.close(linger=0)
        self.backend.close(linger=0)
        log.info("stopped (%d job(s) left unfinished for the next start)", len(self.queue) + len(self.running))

    # --- clients -------------------------------------------------------------------------------
    def _on_client_message(self, identity: bytes, frames: list[bytes]) -> None:
        self._requests += 1
        try:
            message = protocol.decode(frames, protocol.CLIENT_TYPES)
        except ProtocolError as exc:
            req = best_effort_req(frames)
            if best_effort_type(frames) == protocol.SUBMIT:
                self.clients.send(identity, protocol.REJECTED, {"req": req, "code": exc.code, "message": exc.message})
            else:
                self.clients.fail(identity, req, exc.code, exc.message)
            return
        self.clients.note_version(identity, message.version)
        handler = {
            protocol.HEARTBEAT: self._on_heartbeat,
            protocol.PING: self._on_ping,
            protocol.SUBMIT: self._on_submit,
            protocol.CANCEL: self._on_cancel,
            protocol.FETCH: self._on_fetch,
            protocol.STATUS: self._on_status,
            protocol.UNLOAD: self._on_unload,
        }[message.type]
        handler(identity, message)

    def _on_heartbeat(self, identity: bytes, message: Message) -> None:
        self.clients.send(identity, protocol.HEARTBEAT)

    def _on_ping(self, identity: bytes, message: Message) -> None:
        self.clients.send(identity, protocol.PONG, {"req": message.get("req"), "server": self.describe()})

    def _on_submit(self, identity: bytes, message: Message) -> None:
        req = message.header["req"]
        try:
            request = protocol.check_submit(message)
            check_image_decodes(request.image_png)
            if self._stopping:
                raise ProtocolError(protocol.SHUTTING_DOWN, "the server is shutting down")
            if self.queue.full():
                raise ProtocolError(
                    protocol.QUEUE_FULL, f"the queue is full ({self.queue.max_length} jobs waiting); try again later"
                )
            if self.store.free_bytes() < MIN_FREE_BYTES:
                raise ProtocolError(protocol.DISK_FULL, self.store.full_message())
        except ProtocolError as exc:
            self.clients.send(identity, protocol.REJECTED, {"req": req, "code": exc.code, "message": exc.message})
            return
        token = protocol.new_job_token()
        job = Job(protocol.new_job_id(), self.store.next_seq, request.drags, request.settings, owner=identity.hex(),
                  token_sha256=token_hash(token), watchers={identity})
        try:
            self.store.create(job_record(job), request.image_png)
        except OSError as exc:
            self.store.remove(job.id)  # no half-written job folder is left behind
            code, text = (protocol.DISK_FULL, self.store.full_message()) if is_disk_full(exc) else (
                protocol.INTERNAL, f"the job could not be stored: {exc}")
            log.error("submit refused: %s", text)
            self.clients.send(identity, protocol.REJECTED, {"req": req, "code": code, "message": text})
            return
        position = self.queue.push(job)
        self.clients.send(identity, protocol.ACCEPTED, {"req": req, "job": job.id, "position": position,
                                                        "seq": job.seq, "token": token})
        log.info("job %s accepted (seq %d, position %d)", job.id, job.seq, position)
        self._dispatch()

    def _owned_job(self, identity: bytes, message: Message) -> tuple[Job | None, dict[str, Any] | None]:
        """The unfinished job (or, for an ended one, the record) that a CANCEL or FETCH names, if
        the asker owns it; otherwise the request is answered here and both are None."""
        req, job_id, token = message.header["req"], message.header["job"], message.get("token")
        job = self.queue.get(job_id) or self.running.get(job_id)
        record = None if job is not None else self.store.load(job_id)
        if job is None and record is None:
            self.clients.fail(identity, req, protocol.UNKNOWN_JOB, f"no job {job_id} ({self.store.why_unknown(job_id)})",
                              job_id)
            return None, None
        mine = job.owned_by(identity, token) if job is not None else owns(
            identity, token, record.get("client"), record.get("token_sha256"))
        if not mine:
            self.clients.fail(identity, req, protocol.NOT_OWNER, f"job {job_id} was submitted by another client: "
                              "only its owner may see or cancel it (send the job's token from its acceptance)", job_id)
            return None, None
        if job is not None:
            job.watch(identity)  # an owner on a new connection gets the job's events (and the answer)
        return job, record

    def _on_cancel(self, identity: bytes, message: Message) -> None:
        req, job_id = message.header["req"], message.header["job"]
        job, record = self._owned_job(identity, message)
        if job is not None:
            job.cancel_reqs[identity] = req
            if self.queue.remove(job_id) is not None:
                self._finish(job, protocol.CANCELLED_STATE, protocol.CANCELLED, {})
                return
            worker = self.workers.get(job.worker) if job.worker else None
            if worker is not None:  # its CANCELLED (or its result, if it finished first) answers
                self._send_worker(worker, protocol.CANCEL, {"req": req, "job": job_id})
            else:  # no worker to ask: end it here, so the request is answered
                self._finish(job, protocol.CANCELLED_STATE, protocol.CANCELLED, {})
        elif record is not None:
            self.clients.fail(identity, req, protocol.JOB_FINISHED, f"job {job_id} already ended ({record.get('state')})",
                              job_id)

    def _on_fetch(self, identity: bytes, message: Message) -> None:
        req, job_id = message.header["req"], message.header["job"]
        job, record = self._owned_job(identity, message)
        if job is not None:
            self.clients.send(identity, protocol.JOB_STATE, {
                "req": req, "job": job_id, "state": job.state, "position": self.queue.position(job_id)})
            return
        state = record.get("state") if record else None
        if state == protocol.DONE:
            paths = self.store.frame_paths(record)  # sized first: a busy answer reads nothing
            try:
                busy = self.clients.fetch_refusal(identity, job_id, sum(p.stat().st_size for p in paths))
                if busy:
                    self.clients.fail(identity, req, protocol.BUSY, busy, job_id)
                    return
                frames = [p.read_bytes() for p in paths]
            except OSError as exc:
                self.clients.fail(identity, req, protocol.UNKNOWN_JOB, f"job {job_id}: result files are missing ({exc})",
                                  job_id)
                return
            self.clients.send(identity, protocol.RESULT, {"req": req, **self.store.result_fields(record)}, frames,
                              result_of=job_id)
        elif state == protocol.FAILED_STATE:
            self.clients.send(identity, protocol.ERROR, {
                "req": req, "job": job_id, "code": record.get("code") or protocol.INTERNAL,
                "message": record.get("message") or ""})
        elif state == protocol.CANCELLED_STATE:
            self.clients.send(identity, protocol.CANCELLED, {"req": req, "job": job_id})
        elif record is not None:  # queued or running on disk but not here: it was just removed
            self.clients.fail(identity, req, protocol.UNKNOWN_JOB, f"job {job_id} is not known any more", job_id)

    def _on_status(self, identity: bytes, message: Message) -> None:
        """The asker's own jobs by id; everyone's only as counts (in ``server``)."""
        jobs = [*map(self.queue.get, self.queue.ids()), *self.running.values()]
        mine = {job.id for job in jobs if identity in job.watchers}
        workers = [{**w.describe(), "job": w.job if w.job in mine else None, "busy": w.job is not None}
                   for w in self.workers.values()]
        self.clients.send(identity, protocol.STATUS_REPLY, {
            "req": message.header["req"], "server": self.describe(), "queue": [j for j in self.queue.ids() if j in mine],
            "running": sorted(j for j in self.running if j in mine), "workers": workers})

    def _on_unload(self, identity: bytes, message: Message) -> None:
        req = message.header["req"]
        if not self.allow_unload:
            self.clients.fail(identity, req, protocol.NOT_ALLOWED, "this server does not let clients unload its "
                              "model: its operator can start it with `puppet-master serve --allow-unload`")
            return
        for worker in self.workers.values():
            self._send_worker(worker, protocol.UNLOAD, {"req": req})
        self.clients.send(identity, protocol.UNLOADED, {"req": req, "workers": len(self.workers)})

    def describe(self) -> dict[str, Any]:
        """What PONG reports: versions, the first worker's model, device and dtype, counts."""
        first = next(iter(self.workers.values()), None)
        info = first.info if first else {}
        return {
            "damaged": [{"job": d["job"], "reason": d["reason"]} for d in self.store.damaged[-20:]],
            "version": __version__, "protocol": protocol.PROTOCOL_VERSION, "host": socket_module.gethostname(),
            "model": info.get("model"), "device": info.get("device"), "dtype": info.get("dtype"),
            "queue": len(self.queue), "max_queue": self.queue.max_length, "running": len(self.running),
            "workers": len(self.workers), "requests": self._requests,
            "unread_result_bytes": self.clients.unread_bytes(),
            "limits": {"max_image_bytes": protocol.MAX_IMAGE_BYTES, "max_image_side": protocol.MAX_IMAGE_SIDE,
                       "max_drags": protocol.MAX_DRAGS, "steps": [protocol.MIN_STEPS, protocol.MAX_STEPS]},
        }

    # --- workers -------------------------------------------------------------------------------
    def _on_worker_message(self, identity: bytes, frames: list[bytes]) -> None:
        worker = self.workers.get(identity)
        try:
            message = protocol.decode(frames, protocol.WORKER_TYPES)
        except ProtocolError as exc:
            (log.warning if worker else log.debug)("bad message from worker %r: %s", identity, exc)
            return
        if message.type == protocol.READY:
            self._on_ready(identity, worker, message)
            return
        if worker is None:
            log.debug("ignoring %s from unknown worker %r (it will reconnect)", message.type, identity)
            return
        worker.last_heard = time.monotonic()
        if message.type == protocol.SHUTDOWN:
            self._lose_worker(worker, "it stopped")
            return
        if message.type == protocol.PREVIEW_GIF:
            record = self.store.load(message.header["job"]) or {}
            if record.get("state") == protocol.DONE and record.get("worker") == worker.info.get("id"):
                try:
                    self.store.save_preview(record["job"], message.blobs[0])
                except OSError as exc:  # the frames are stored; only the GIF is missing
                    log.warning("job %s: could not store preview.gif: %s", record["job"], exc)
            return
        job = self.running.get(message.get("job")) if message.get("job") else None
        if message.type in (protocol.PROGRESS, protocol.VARIANT, protocol.RESULT, protocol.ERROR, protocol.CANCELLED) and (
            job is None or job.worker != identity
        ):
            log.warning("worker %r sent %s for a job it does not run", identity, message.type)
            return
        if message.type == protocol.UNLOADED:
            worker.loaded = False
            return
        if message.type == protocol.PROGRESS:
            worker.loaded = True
            job.step = message.header["step"]
            fields = {k: message.header.get(k) for k in ("job", "step", "total", "eta_s", "elapsed_s")}
            for watcher in job.watchers:
                self.clients.send(watcher, protocol.PROGRESS, fields, message.blobs[:1])
        elif message.type == protocol.VARIANT:  # a finished variant, streamed; the RESULT holds it again
            try:
                check_result_frames(message.blobs, job.settings.frames_per_variant, protocol.FRAME_SIZE)
            except ProtocolError as exc:
                log.warning("job %s: worker %s sent a broken variant: %s", job.id, worker.info.get("id"), exc.message)
                return
            fields = {"job": job.id, "index": message.header["index"], "seed": message.header["seed"]}
            for watcher in job.watchers:
                self.clients.send(watcher, protocol.VARIANT, fields, message.blobs, result_of=job.id)
        elif message.type == protocol.RESULT:
            self._on_result(worker, job, message)
        elif message.type == protocol.ERROR:
            self._worker_idle(worker)
            self._finish(job, protocol.FAILED_STATE, protocol.ERROR,
                         {"code": message.header["code"], "message": message.header["message"]})
        elif message.type == protocol.CANCELLED:
            self._worker_idle(worker)
            self._finish(job, protocol.CANCELLED_STATE, protocol.CANCELLED, {})
        self._dispatch()

    def _on_ready(self, identity: bytes, worker: Worker | None, message: Message) -> None:
        """A worker joins, if it shows the worker secret and its id is not another live worker's."""
        info = dict(message.header["worker"])
        reason = self.gate.refusal(info, message.get("secret"), [w.info for w in self.workers.values() if w is not worker])
        if reason:
            self.gate.refuse(self.backend, identity, reason)
            return
        for known in list(self.workers.values()):
            if worker is known:
                self._lose_worker(known, "it joined again")
            elif info.get("id") is not None and known.info.get("id") == info.get("id"):
                self._lose_worker(known, "it reconnected")  # the same process under a new identity
        self.workers[identity] = Worker(identity, info)
        log.info("worker joined: %s", info)
        if self.supervisor is not None and info.get("host") == socket_module.gethostname():
            self.supervisor.mark_ready(info.get("pid"))
        self._dispatch()

    def _on_result(self, worker: Worker, job: Job, message: Message) -> None:
        self._worker_idle(worker)
        worker.jobs_done += 1
        try:
            check_result_frames(message.blobs, job.settings.result_frames, protocol.FRAME_SIZE)
        except ProtocolError as exc:
            log.error("job %s: worker %s sent a broken result: %s", job.id, worker.info.get("id"), exc.message)
            self._finish(job, protocol.FAILED_STATE, protocol.ERROR, {
                "code": protocol.GENERATION_FAILED, "message": f"the worker's result is broken: {exc.message}"})
            return
        settings = dict(message.header["settings"])
        info = {**(message.header.get("info") or {}), "worker": worker.info.get("id"), "seq": job.seq,
                "start_index": job.start_index, "queue_s": (job.started_at or 0) - job.accepted_at,
                "run_s": time.monotonic() - (job.started_at or time.monotonic())}
        frames = message.blobs
        # persist first, then announce: a client never holds a result the server has not stored
        # (after a restart it would get the job's end a second time)
        try:
            self.store.save_result(job.id, frames, {**settings, "drags": job.drags, "job": job.id}, info=info)
        except OSError as exc:
            self.store.drop_frames(job.id)
            code, text = (protocol.DISK_FULL, self.store.full_message()) if is_disk_full(exc) else (
                protocol.INTERNAL, f"the result could not be stored: {exc}")
            log.error("job %s: %s", job.id, text)
            self._finish(job, protocol.FAILED_STATE, protocol.ERROR, {"code": code, "message": text})
            return
        self.running.pop(job.id, None)
        fields = {"job": job.id, "settings": settings, "drags": job.drags, "info": info}
        for watcher in job.watchers:
            self.clients.send(watcher, protocol.RESULT, {**fields, "req": job.cancel_reqs.get(watcher)}, frames,
                              result_of=job.id)
        log.info("job %s done by %s", job.id, worker.info.get("id"))

    def _worker_idle(self, worker: Worker) -> None:
        worker.job = None
        worker.idle_since = time.monotonic()

    def _lose_worker(self, worker: Worker, reason: str) -> None:
        self.workers.pop(worker.identity, None)
        log.warning("worker %s lost: %s", worker.info.get("id"), reason)
        job = self.running.get(worker.job) if worker.job else None
        if job is not None:
            self._finish(job, protocol.FAILED_STATE, protocol.ERROR, {
                "code": protocol.WORKER_LOST, "message": f"the worker running this job was lost ({reason})"})

    def _dispatch(self) -> None:
        idle = sorted((w for w in self.workers.values() if w.job is None), key=lambda w: w.idle_since)
        for worker in idle:
            job = self.queue.pop()
            if job is None:
                return
            image = self.store.input_png(job.id)  # queued images wait on disk, not in memory
            if image is None:
                self._finish(job, protocol.FAILED_STATE, protocol.ERROR, {
                    "code": protocol.INTERNAL, "message": "its input image could not be read from the results folder"})
                continue
            job.state, job.worker, job.start_index = protocol.RUNNING, worker.identity, self._start_count
            job.started_at = time.monotonic()
            self._start_count += 1
            worker.job = job.id
            self.running[job.id] = job
            try:
                self.store.update(job.id, state=protocol.RUNNING, started=time.time(), worker=worker.info.get("id"))
            except OSError as exc:  # the record says queued: a restart runs it again, nothing is lost
                log.error("could not record that job %s runs: %s", job.id, exc)
            self._send_worker(worker, protocol.JOB, {"job": job.id, "drags": job.drags,
                                                     "settings": job.settings.to_json()}, [image])
            for watcher in job.watchers:
                self.clients.send(watcher, protocol.PROGRESS, {
                    "job": job.id, "step": 0, "total": job.settings.num_inference_steps, "eta_s": None})

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if self.supervisor is not None:
            exited = set(self.supervisor.check())
            for worker in list(self.workers.values()):
                if worker.info.get("pid") in exited and worker.info.get("host") == socket_module.gethostname():
                    self._lose_worker(worker, "its process exited")
        for worker in list(self.workers.values()):
            if now - worker.last_heard > self.worker_timeout_s:
                self._lose_worker(worker, f"no heartbeat for {now - worker.last_heard:.1f} s")
            elif now - worker.last_sent >= self.heartbeat_interval_s:
                self._send_worker(worker, protocol.HEARTBEAT)
        self._dispatch()

    # --- endings and sending -------------------------------------------------------------------
    def _finish(self, job: Job, state: str, type_: str, fields: dict[str, Any]) -> None:
        """End ``job`` (exactly once): persist the final state and tell every watcher."""
        self.running.pop(job.id, None)
        self.queue.remove(job.id)
        job.state = state
        try:
            self.store.update(job.id, state=state, finished=time.time(), **fields)
        except OSError as exc:
            # not even the small record fits: drop the job's folder, so no restart runs it again and
            # sends a second ending (a fetch then says it is unknown)
            log.error("could not record the end of job %s (%s): its folder is removed", job.id, exc)
            self.store.remove(job.id)
        for watcher in job.watchers:
            self.clients.send(watcher, type_, {"job": job.id, **fields, "req": job.cancel_reqs.get(watcher)})
        log.info("job %s ended: %s %s", job.id, state, fields.get("message", ""))
        try:
            self.store.prune()
        except OSError as exc:
            log.warning("could not prune %s: %s", self.store.root, exc)

    def _send_worker(self, worker: Worker, type_: str, fields: dict[str, Any] | None = None,
                     blobs: list[bytes] | tuple = ()) -> None:
        try:
            self.backend.send_multipart([worker.identity, *protocol.encode(type_, fields, blobs)], zmq.NOBLOCK)
            worker.last_sent = time.monotonic()
        except zmq.ZMQError as exc:
            log.warning("could not send %s to worker %s: %s", type_, worker.info.get("id"), exc)
