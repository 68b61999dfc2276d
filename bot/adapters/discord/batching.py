"""Group commit for votes: clicks that arrive while a commit is running share the next transaction.

A durable SQLite commit costs an fsync (a few ms on ordinary disks), so one commit per click caps
throughput at a few hundred votes/s. The batcher adds no delay: a lone click is committed at once;
under load, the votes queued during one commit go together into the next (`cast_votes`, one
savepoint each), which turns N fsyncs into one. Each caller still gets its own result only after the
commit, so a confirmation is never sent for an uncommitted vote.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from bot.core.errors import LabelingError
from bot.core.events import VoteCast
from bot.core.replies import VoteRecorded
from bot.core.service import LabelingService

log = logging.getLogger("labelbot.discord")

MAX_BATCH = 64


class VoteBatcher:
    def __init__(self, service: LabelingService, max_batch: int = MAX_BATCH) -> None:
        self.service = service
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[VoteCast, asyncio.Future[VoteRecorded]]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Future[VoteRecorded]] = set()
        self.batches = 0
        self.votes = 0

    async def cast(self, event: VoteCast) -> VoteRecorded:
        """Commit one vote (possibly with others); raises the core's LabelingError when refused."""
        if self._queue is None:
            self._queue = asyncio.Queue()
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="labelbot-vote-batcher")
        fut: asyncio.Future[VoteRecorded] = asyncio.get_running_loop().create_future()
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        await self._queue.put((event, fut))
        return await fut

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            events = [event for event, _ in batch]
            try:
                results: list[VoteRecorded | LabelingError | BaseException] = list(
                    await asyncio.to_thread(self.service.cast_votes, events))
            except Exception:
                log.warning("group commit of %d vote(s) failed; committing them one by one", len(batch),
                            exc_info=True)
                results = await asyncio.gather(*[asyncio.to_thread(self.service.cast_vote, e) for e in events],
                                               return_exceptions=True)
            self.batches += 1
            self.votes += len(batch)
            for (_, fut), res in zip(batch, results, strict=True):
                if fut.done():
                    continue
                if isinstance(res, BaseException):
                    fut.set_exception(res)
                else:
                    fut.set_result(res)

    async def close(self, timeout: float = 10.0) -> None:
        """Let queued votes commit (and their callers answer), then stop the worker."""
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=timeout)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
