"""The generation server behind ``puppet-master serve`` (see docs/protocol.md).

- :mod:`.broker`: clients (ROUTER frontend) <-> bounded FIFO queue <-> workers (ROUTER backend).
- :mod:`.worker`: a model worker process (DEALER) running one job at a time.
- :mod:`.generation`: one job through the pipeline (the only module here that imports torch).
- :mod:`.store`: the results folder (every accepted job, its result, retention).
- :mod:`.local_workers`: worker processes started and restarted by ``serve``.
- :mod:`.security`: loopback-only by default, CurveZMQ keys otherwise.
"""
