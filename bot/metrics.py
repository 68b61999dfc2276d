"""Prometheus metrics for `labelbot serve` (scraped at GET /metrics).

One private registry (not prometheus_client's global one), so tests and several apps in one process
never collide. Adapters and the scheduler call the small helpers below; the vote counter is fed by a
hook in bot/core (`bot.core.hooks`), so the core never imports prometheus_client.
"""

from __future__ import annotations

import gc
import threading

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from bot.core import hooks

REGISTRY = CollectorRegistry(auto_describe=True)

# Slack wants an answer within 3 s: buckets resolve the region around that limit.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)

VOTES = Counter("labelbot_votes", "Vote attempts by platform and outcome (new, changed, unchanged, replay, rejected)",
                ["platform", "kind"], registry=REGISTRY)
INTERACTIONS = Counter("labelbot_interactions", "Platform interactions handled (buttons, commands, modals, events)",
                       ["platform", "kind"], registry=REGISTRY)
ACK_LATENCY = Histogram("labelbot_ack_latency_seconds", "Time from receiving an interaction to acknowledging it",
                        ["platform"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
HTTP_LATENCY = Histogram("labelbot_http_request_duration_seconds", "HTTP request handling time by route",
                         ["method", "route"], buckets=LATENCY_BUCKETS, registry=REGISTRY)
HTTP_REQUESTS = Counter("labelbot_http_requests", "HTTP requests by route and status class",
                        ["method", "route", "status"], registry=REGISTRY)
POSTING_QUEUE = Gauge("labelbot_posting_queue", "Messages waiting to be posted to a channel", ["platform"],
                      registry=REGISTRY)
JOB_RUNS = Counter("labelbot_job_runs", "Scheduler job runs by job and final status", ["job", "status"],
                   registry=REGISTRY)
VOTES_IN_FLIGHT = Gauge("labelbot_votes_in_flight", "Votes being written right now", registry=REGISTRY)
VOTES_IN_FLIGHT.set_function(hooks.votes_in_flight)
GC_FROZEN = Gauge("labelbot_gc_frozen_objects", "Start-up objects moved out of the garbage collector's reach",
                  registry=REGISTRY)
GC_FROZEN.set_function(gc.get_freeze_count)

_install_lock = threading.Lock()


def _on_vote(platform: str, kind: str) -> None:
    VOTES.labels(platform or "unknown", kind).inc()


def install() -> None:
    """Start counting votes (idempotent)."""
    with _install_lock:
        hooks.add_vote_observer(_on_vote)


def interaction(platform: str, kind: str) -> None:
    """Count one interaction, e.g. `interaction("slack", "block_actions")`."""
    INTERACTIONS.labels(platform, kind).inc()


def ack_latency(platform: str, seconds: float) -> None:
    """Record how long an acknowledgement took (Slack: HTTP 200; Discord: interaction response)."""
    ACK_LATENCY.labels(platform).observe(max(0.0, seconds))


def posting_queue(n: int, platform: str = "all") -> None:
    POSTING_QUEUE.labels(platform).set(n)


def job_run(job: str, status: str) -> None:
    """Count a finished scheduler job run (done, failed, skipped, crashed)."""
    JOB_RUNS.labels(job, status).inc()


def http_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_LATENCY.labels(method, route).observe(seconds)
    HTTP_REQUESTS.labels(method, route, f"{status // 100}xx").inc()


def exposition() -> tuple[bytes, str]:
    """The metrics page body and its content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
