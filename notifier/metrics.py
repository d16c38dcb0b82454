"""Notifier metrics and its /metrics and /healthz server (port 9101).

Names follow ``v2m_<component>_<thing>_<unit>``; no label holds a job, user or URL.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERIES = Counter(
    "v2m_notifier_deliveries_total",
    "Delivery attempts by channel and outcome (succeeded, failed).",
    ["channel", "outcome"],
)
DELIVERY_DURATION = Histogram(
    "v2m_notifier_delivery_duration_seconds",
    "Time one delivery attempt took (request or SMTP session).",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
DELIVERY_LATENCY = Histogram(
    "v2m_notifier_delivery_latency_seconds",
    "From the job's outcome to a successful delivery, retries included.",
    ["channel"],
    buckets=(0.1, 0.5, 1, 2, 5, 15, 60, 300, 1800, 3600, 4 * 3600, 24 * 3600),
)
EVENTS = Counter("v2m_notifier_events_total", "Job events consumed, by type.", ["type"])


def initialise() -> None:
    """Create every series at zero so rates exist before the first delivery."""
    for channel in ("webhook", "email"):
        for outcome in ("succeeded", "failed"):
            DELIVERIES.labels(channel, outcome)
        DELIVERY_DURATION.labels(channel)
        DELIVERY_LATENCY.labels(channel)
    for event_type in ("job.completed", "job.failed"):
        EVENTS.labels(event_type)
