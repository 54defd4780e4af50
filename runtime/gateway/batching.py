"""Decides that arrive together share one backend call.

A single decision spends most of its time in per-call overhead (building a one-row observation in
numpy, one ONNX Runtime run), not in arithmetic. Requests whose handlers run in the same
event-loop iteration (concurrent clients whose bytes arrived in the same poll) are queued, and one
loop callback decides them all with one :meth:`PolicyService.decide_begin` call: the same
observations (``policy_io.build_observation`` is row-wise) through the same actor, so the same
decisions as one at a time up to the backend's float rounding (a row's action may differ in its
last bits with the batch size; ``tests/test_gateway_sidecar.py`` checks), at a fraction of the
cost. Nothing waits for company: the callback runs as soon as the handlers already scheduled have
queued. If the combined call is refused (an id clash, a full pending table), each request is
decided alone, so an error goes to the request that caused it.
"""

from __future__ import annotations

import asyncio
from typing import Sequence

from ..service import Decision, PolicyService, ServiceError, Telemetry

__all__ = ["DecideBatcher"]


class DecideBatcher:
    """Micro-batching of decides on one event loop (for backends that decide inline).

    :param service: the policy service
    """

    def __init__(self, service: PolicyService) -> None:
        self.service = service
        self._queue: list[tuple[Sequence[Telemetry], asyncio.Future]] = []
        self._scheduled = False
        self.calls = 0  # backend calls made (requests / calls = mean batch)

    async def decide(self, batch: Sequence[Telemetry]) -> list[Decision]:
        """The decisions of one request's batch, in order.

        :raises ServiceError, PendingFullError: as :meth:`PolicyService.decide_begin`, for this request
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        self._queue.append((batch, fut))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await fut

    def _flush(self) -> None:
        self._scheduled = False
        items, self._queue = self._queue, []
        items = [(b, f) for b, f in items if not f.cancelled()]  # a client that left before its turn
        if not items:
            return
        if len(items) > 1:
            combined = [t for b, _ in items for t in b]
            try:
                decisions, _ = self.service.decide_begin(combined)
            except ServiceError:
                pass  # decided one by one below, each request getting its own answer
            except Exception as e:  # a bug: every waiting request gets it (answered as a 500)
                for _, f in items:
                    f.set_exception(e)
                return
            else:
                self.calls += 1
                i = 0
                for b, f in items:
                    f.set_result(decisions[i:i + len(b)])
                    i += len(b)
                return
        for b, f in items:
            try:
                f.set_result(self.service.decide_begin(b)[0])
                self.calls += 1
            except Exception as e:  # ServiceError, PendingFullError: this request's own
                f.set_exception(e)
