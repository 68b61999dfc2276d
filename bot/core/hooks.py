"""Observer hooks on the vote path, so operations code (metrics, graceful shutdown) can watch votes
without the core importing it: `bot.metrics` registers a callback here, `bot.server` waits on
`wait_idle` before stopping the bots, and each chat adapter hears `item_changed` to refresh its own
messages of an item voted on through the other platform. Callbacks run in the thread that committed
the vote: they must be cheap and thread-safe; one that raises is ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger("labelbot.core.hooks")

# (platform, kind) with kind: new | changed | unchanged | replay | rejected
VoteObserver = Callable[[str, str], None]
_observers: list[VoteObserver] = []
# (the VoteRecorded, platform the vote came from), after a committed new or changed vote
ItemObserver = Callable[[Any, str], None]
_item_observers: list[ItemObserver] = []
_idle = threading.Condition()
_in_flight = 0


def add_vote_observer(fn: VoteObserver) -> None:
    """Call `fn(platform, kind)` after every vote attempt (idempotent per function)."""
    if fn not in _observers:
        _observers.append(fn)


def remove_vote_observer(fn: VoteObserver) -> None:
    if fn in _observers:
        _observers.remove(fn)


def vote_observed(platform: str, kind: str) -> None:
    for fn in list(_observers):
        try:
            fn(platform, kind)
        except Exception:  # an observer must never break a vote
            log.exception("vote observer failed")


def add_item_observer(fn: ItemObserver) -> None:
    """Call `fn(result, platform)` after every committed vote that changed an item's tallies."""
    if fn not in _item_observers:
        _item_observers.append(fn)


def remove_item_observer(fn: ItemObserver) -> None:
    if fn in _item_observers:
        _item_observers.remove(fn)


def item_changed(result: Any, platform: str) -> None:
    for fn in list(_item_observers):
        try:
            fn(result, platform)
        except Exception:  # an observer must never break a vote
            log.exception("item observer failed")


def vote_committed(platform: str, result: Any) -> None:
    """Tell the observers about one vote attempt once its transaction is over."""
    kind = vote_kind(result)
    vote_observed(platform, kind)
    if kind in ("new", "changed"):
        item_changed(result, platform)


@contextmanager
def vote_in_flight() -> Iterator[None]:
    """Mark a vote as being written, so shutdown can wait for it to commit."""
    global _in_flight
    with _idle:
        _in_flight += 1
    try:
        yield
    finally:
        with _idle:
            _in_flight -= 1
            if _in_flight == 0:
                _idle.notify_all()


def vote_kind(result: Any) -> str:
    """new | changed | unchanged | replay, from a VoteRecorded."""
    if result.replay:
        return "replay"
    if result.changed:
        return "changed"
    return "unchanged" if result.previous is not None else "new"


@contextmanager
def tracked_vote(platform: str) -> Iterator[Callable[[Any], Any]]:
    """Wrap one vote write: in flight while inside, then observed with its kind (`rejected` when it
    raised). Usage: `with tracked_vote(p) as done: return done(write_the_vote())`."""
    results: list[Any] = []

    def done(result: Any) -> Any:
        results.append(result)
        return result

    with vote_in_flight():
        try:
            yield done
        except Exception:  # refused (LabelingError) or failed: either way no vote was written
            vote_observed(platform, "rejected")
            raise
    if results:
        vote_committed(platform, results[0])


def votes_in_flight() -> int:
    return _in_flight


def wait_idle(timeout: float) -> bool:
    """Block until no vote is being written (True) or `timeout` seconds passed (False)."""
    with _idle:
        return _idle.wait_for(lambda: _in_flight == 0, timeout=timeout)
