"""What GET /metrics answers: Prometheus text for a scraper that holds DJANGO_METRICS_TOKEN.

Two kinds of metric:
- counted where things happen, by the process they happen in: `imports_aws_calls_total` and
  `imports_aws_call_seconds` (imports/aws/metrics.py, at the door to boto3) and `imports_limiter_wait_seconds`
  (imports/jobs/limiter.py). Under PROMETHEUS_MULTIPROC_DIR every gunicorn and Celery process writes them to its
  own files, and a scrape adds the files up; without it a scrape sees the web process's own counts only.
- read at scrape time (`StateCollector`): jobs by status and running scans from the database, the broker's queue
  depth, and the age of beat's heartbeat. The queue read is bounded by HEALTH_PROBE_TIMEOUT_S, as the health
  probes are; a broker that does not answer leaves `imports_queue_depth` out rather than hold the scrape.

Nothing here names a patient, a bucket or a key: labels are statuses, operation names, outcomes and queue names.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as ReadTimeout
from typing import Any

from celery import current_app
from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from kombu.exceptions import ChannelError
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from imports.models import Heartbeat, ImportJob, Scan
from imports.operations.health import BEAT

logger = logging.getLogger(__name__)


def metrics_enabled() -> bool:
    """/metrics is off (404) until DJANGO_METRICS_TOKEN is set."""
    return bool(settings.METRICS_TOKEN)


def metrics_authorized(*, authorization: str) -> bool:
    """True when the Authorization header is "Bearer <DJANGO_METRICS_TOKEN>", compared in constant time."""
    expected = str(settings.METRICS_TOKEN)
    scheme, _, token = authorization.strip().partition(" ")
    if not expected or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(token.strip().encode(), expected.encode())


def queue_names() -> list[str]:
    """The queues Celery's workers consume: the default one, and any configured in task_queues."""
    conf = current_app.conf
    names = [str(conf.task_default_queue)]
    for queue in conf.task_queues or ():
        name = getattr(queue, "name", None) or str(queue)
        if name not in names:
            names.append(name)
    return names


def _read_queue_depths(queues: list[str]) -> dict[str, int]:
    depths = {}
    with current_app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=settings.HEALTH_PROBE_TIMEOUT_S)
        channel: Any = (
            conn.default_channel
        )  # a virtual (Redis, file-system) or AMQP channel
        for queue in queues:
            # kombu counts as the broker keeps messages: LLEN of the queue's lists (one per priority) on
            # Redis, the message files in the queue folder on the embedded file-system broker.
            try:
                _, depth, _ = channel.queue_declare(queue=queue, passive=True)
            except ChannelError:
                # Redis drops an emptied list: no such queue is a queue with nothing in it.
                depth = 0
            depths[queue] = int(depth)
    return depths


def queue_depths(queues: list[str] | None = None) -> dict[str, int] | None:
    """Messages waiting in each queue, or None when the broker did not answer within HEALTH_PROBE_TIMEOUT_S."""
    timeout = settings.HEALTH_PROBE_TIMEOUT_S
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics")
    future = pool.submit(_read_queue_depths, queues or queue_names())
    try:
        return future.result(timeout=timeout)
    except ReadTimeout:
        logger.warning("Queue depth: no answer from the broker within %g s", timeout)
        return None
    except Exception as error:  # kombu, redis and OS errors alike: a scrape without the queue, not a 500
        logger.warning("Queue depth: broker unreachable (%s)", type(error).__name__)
        return None
    finally:
        # A read stuck past its timeout finishes in its thread; the scrape does not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)


class StateCollector(Collector):
    """The dashboard's state, read when Prometheus scrapes (never stored in the metric files)."""

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily(
            "imports_jobs", "Import jobs, by status.", labels=["status"]
        )
        counts = dict(
            ImportJob.objects.order_by()
            .values_list("status")
            .annotate(count=Count("pk"))
            .values_list("status", "count")
        )
        for status in ImportJob.Status.values:
            jobs.add_metric([status], counts.get(status, 0))
        yield jobs
        yield GaugeMetricFamily(
            "imports_scans_running",
            "Scans running now.",
            value=Scan.objects.filter(status=Scan.Status.RUNNING).count(),
        )
        beat = Heartbeat.objects.filter(name=BEAT).values_list("at", flat=True).first()
        if beat is not None:
            yield GaugeMetricFamily(
                "imports_beat_heartbeat_age_seconds",
                "Seconds since a worker last ran beat's heartbeat task (absent before the first one).",
                value=(timezone.now() - beat).total_seconds(),
            )
        depths = queue_depths()
        if depths is not None:
            queue = GaugeMetricFamily(
                "imports_queue_depth",
                "Messages waiting in the broker, by queue.",
                labels=["queue"],
            )
            for name, depth in depths.items():
                queue.add_metric([name], depth)
            yield queue


class _ThisProcess(Collector):
    """The default registry's metrics (this process's counters), when there is no multiprocess folder."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def metrics_exposition() -> tuple[bytes, str]:
    """The body and content type of one scrape."""
    registry = CollectorRegistry()
    folder = settings.PROMETHEUS_MULTIPROC_DIR
    if folder:
        MultiProcessCollector(registry, path=folder)  # type: ignore[no-untyped-call]
    else:
        registry.register(_ThisProcess())
    registry.register(StateCollector())
    # The classic text format every Prometheus reads (the names here need none of 1.0.0's escaping).
    return generate_latest(registry), CONTENT_TYPE_PLAIN_0_0_4
