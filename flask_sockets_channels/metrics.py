"""The figures of :meth:`Sockets.stats` for Prometheus (``prometheus-client``).

::

    from flask_sockets_channels import metrics

    metrics.register(sockets_ext)   # into prometheus_client's default registry

Needs the ``prometheus`` extra: ``pip install flask-sockets-channels[prometheus]``.

Every metric name starts with ``fsc_``; counters end in ``_total``:

==========================================  =======  ==================================
metric                                      type     what
==========================================  =======  ==================================
``fsc_connections_open``                    gauge    connections open now
``fsc_connections_open_by_endpoint``        gauge    the same, label ``endpoint``
``fsc_connections_opened_total``            counter  connections admitted
``fsc_connections_closed_total``            counter  connections done
``fsc_handshakes_rejected_total``           counter  refused handshakes, label ``status``
``fsc_messages_in_total``                   counter  messages received
``fsc_messages_out_total``                  counter  messages sent
``fsc_bytes_in_total``                      counter  payload bytes received
``fsc_bytes_out_total``                     counter  payload bytes sent
``fsc_close_codes_total``                   counter  closed connections, label ``code``
``fsc_errors_total``                        counter  errors put on ``errors``, label ``type``
``fsc_hub_rooms``                           gauge    rooms with members in this process
``fsc_hub_members``                         gauge    members in this process
``fsc_hub_published_total``                 counter  messages published
``fsc_hub_delivered_total``                 counter  messages queued for members
``fsc_hub_slow_consumers_closed_total``     counter  members closed with 1008
``fsc_hub_reconnects_total``                counter  reconnections to the broker
``fsc_hub_messages_lost_total``             counter  messages the broker dropped unread
==========================================  =======  ==================================

In one process the figures are read when Prometheus scrapes. In
prometheus-client's multi-process mode (``PROMETHEUS_MULTIPROC_DIR`` set,
e.g. under gunicorn with several workers), scrape-time collectors cannot be
summed across processes, so :func:`register` instead copies the figures of
each process into prometheus-client's own metrics (its shared files) every
``interval`` seconds, from a thread of that process; serve them with
:class:`MultiProcessCollector`, prometheus-client's collector of the same
name made safe against a file another process is still creating.
"""

from __future__ import annotations

import glob
import logging
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Callable, Literal, Union

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge
from prometheus_client import values as prometheus_values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector as _PrometheusCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from .extension import Sockets
    from .stats import Snapshot

__all__ = [
    "METRICS",
    "MultiProcessCollector",
    "MultiProcessExporter",
    "SocketsCollector",
    "register",
]

logger = logging.getLogger("flask_sockets_channels")

Value = Union[int, Mapping[str, int], Mapping[int, int], Mapping[Union[int, str], int]]


class _Metric:
    """One metric: its name (without ``_total``), kind, help, label, and
    how to read its value (a number, or label value -> number) from a
    snapshot."""

    def __init__(
        self,
        name: str,
        kind: str,
        documentation: str,
        read: Callable[[Snapshot], Value],
        label: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.documentation = documentation
        self.read = read
        self.label = label

    def samples(self, snapshot: Snapshot) -> list[tuple[tuple[str, ...], float]]:
        """(label values, value) pairs, labels in order."""
        value = self.read(snapshot)
        if isinstance(value, Mapping):
            items = sorted(value.items(), key=lambda item: str(item[0]))
            return [((str(key),), float(count)) for key, count in items]
        return [((), float(value))]


#: Every metric exported.
METRICS = (
    _Metric("fsc_connections_open", "gauge", "WebSocket connections open now", lambda s: s["open"]),
    _Metric(
        "fsc_connections_open_by_endpoint",
        "gauge",
        "WebSocket connections open now, by endpoint",
        lambda s: s["open_by_endpoint"],
        "endpoint",
    ),
    _Metric(
        "fsc_connections_opened", "counter", "WebSocket connections admitted", lambda s: s["opened"]
    ),
    _Metric(
        "fsc_connections_closed", "counter", "WebSocket connections done", lambda s: s["closed"]
    ),
    _Metric(
        "fsc_handshakes_rejected",
        "counter",
        "WebSocket handshakes answered with an HTTP error, by status",
        lambda s: s["rejected"],
        "status",
    ),
    _Metric("fsc_messages_in", "counter", "Messages received", lambda s: s["messages_in"]),
    _Metric("fsc_messages_out", "counter", "Messages sent", lambda s: s["messages_out"]),
    _Metric("fsc_bytes_in", "counter", "Payload bytes received", lambda s: s["bytes_in"]),
    _Metric("fsc_bytes_out", "counter", "Payload bytes sent", lambda s: s["bytes_out"]),
    _Metric(
        "fsc_close_codes",
        "counter",
        "Connections done, by close code (1006: TCP died; 3000-4999: application)",
        lambda s: s["close_codes"],
        "code",
    ),
    _Metric(
        "fsc_errors",
        "counter",
        "Errors put on connections' errors channels, by type",
        lambda s: s["errors"],
        "type",
    ),
    _Metric(
        "fsc_hub_rooms",
        "gauge",
        "Hub rooms with members in this process",
        lambda s: s["hub"]["rooms"],
    ),
    _Metric(
        "fsc_hub_members", "gauge", "Hub members in this process", lambda s: s["hub"]["members"]
    ),
    _Metric(
        "fsc_hub_published",
        "counter",
        "Messages published to the hub",
        lambda s: s["hub"]["published"],
    ),
    _Metric(
        "fsc_hub_delivered",
        "counter",
        "Hub messages queued for members",
        lambda s: s["hub"]["delivered"],
    ),
    _Metric(
        "fsc_hub_slow_consumers_closed",
        "counter",
        "Hub members closed for a full backlog (1008)",
        lambda s: s["hub"]["slow_consumers_closed"],
    ),
    _Metric(
        "fsc_hub_reconnects",
        "counter",
        "Reconnections of the hub to its broker",
        lambda s: s["hub"]["reconnects"],
    ),
    _Metric(
        "fsc_hub_messages_lost",
        "counter",
        "Messages the broker dropped before this process read them",
        lambda s: s["hub"]["messages_lost"],
    ),
)


class SocketsCollector:
    """A prometheus-client collector of a ``Sockets`` object's figures,
    read from :meth:`Sockets.stats` at each scrape."""

    def __init__(self, sockets: Sockets) -> None:
        self.sockets = sockets

    def collect(self) -> Iterable[Metric]:
        """The metrics now (prometheus-client calls it at each scrape)."""
        return _families(self.sockets.stats())

    def describe(self) -> Iterable[Metric]:
        """The metrics' names, without values (for the registry's checks)."""
        return _families(None)


def _families(snapshot: Snapshot | None) -> list[Metric]:
    families: list[Metric] = []
    for metric in METRICS:
        labels = [metric.label] if metric.label else []
        family: GaugeMetricFamily | CounterMetricFamily
        if metric.kind == "gauge":
            family = GaugeMetricFamily(metric.name, metric.documentation, labels=labels)
        else:
            family = CounterMetricFamily(metric.name, metric.documentation, labels=labels)
        if snapshot is not None:
            for label_values, value in metric.samples(snapshot):
                family.add_metric(list(label_values), value)
        families.append(family)
    return families


class MultiProcessExporter:
    """Copies a ``Sockets`` object's figures into prometheus-client's
    multi-process metrics every ``interval`` seconds, from a daemon thread
    of each process (restarted in a forked child, e.g. a gunicorn worker of
    a ``--preload`` app).

    Gauges are summed over the live processes (``livesum``), except
    ``fsc_hub_rooms``: the largest of them (``livemax``), as processes share
    rooms. Counters are summed over every process that ever ran, as
    prometheus-client does.
    """

    def __init__(self, sockets: Sockets, interval: float) -> None:
        self.sockets = sockets
        self.interval = interval
        self._metrics: dict[str, Gauge | Counter] = {}
        for metric in METRICS:
            labels = [metric.label] if metric.label else []
            if metric.kind == "gauge":
                mode: Literal["livemax", "livesum"] = (
                    "livemax" if metric.name == "fsc_hub_rooms" else "livesum"
                )
                self._metrics[metric.name] = Gauge(
                    metric.name,
                    metric.documentation,
                    labels,
                    registry=None,
                    multiprocess_mode=mode,
                )
            else:
                self._metrics[metric.name] = Counter(
                    metric.name, metric.documentation, labels, registry=None
                )
        self._sent: dict[tuple[str, tuple[str, ...]], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sync(self) -> None:
        """Copy the figures now."""
        snapshot = self.sockets.stats()
        for metric in METRICS:
            target = self._metrics[metric.name]
            for label_values, value in metric.samples(snapshot):
                child = target.labels(*label_values) if label_values else target
                if isinstance(child, Gauge):
                    child.set(value)
                else:
                    key = (metric.name, label_values)
                    if value > self._sent.get(key, 0.0):
                        child.inc(value - self._sent.get(key, 0.0))
                        self._sent[key] = value

    def start(self) -> None:
        """Start the thread, here and in every child forked later (until
        :meth:`close`)."""
        _running.add(self)
        self._start_thread()

    def close(self) -> None:
        """Stop the thread after one last copy; a child forked later starts
        none."""
        _running.discard(self)
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join()

    def _start_thread(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name="flask-sockets-channels metrics", daemon=True
        )
        self._thread.start()

    def _restart_in_child(self) -> None:
        # A child's figures start from nothing: its files are its own.
        self._sent.clear()
        self._start_thread()

    def _run(self) -> None:
        # Owns: the copying. Ends when close() sets _stop.
        while True:
            stopping = self._stop.wait(self.interval)
            try:
                self.sync()
            except Exception:
                logger.error("metrics: copying the figures failed", exc_info=True)
            if stopping:
                return


class MultiProcessCollector(Collector):
    """prometheus-client's ``MultiProcessCollector``, except that a file of
    0 bytes counts as holding nothing instead of failing the whole scrape.

    prometheus-client creates a process's file and only then sizes it, so a
    scrape in another process can meet it empty (a 500 from ``/metrics``),
    and a process killed at that moment leaves it empty for good
    (prometheus/client_python#1199). Use it as the original::

        registry = CollectorRegistry()
        metrics.MultiProcessCollector(registry)

    Args:
        registry: Where to register it (``None``: nowhere).
        path: The files' directory; ``PROMETHEUS_MULTIPROC_DIR`` if ``None``.

    Raises:
        ValueError: No directory given, or not a directory.
    """

    def __init__(self, registry: CollectorRegistry | None, path: str | None = None) -> None:
        path = path or os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        if not path or not os.path.isdir(path):
            raise ValueError("PROMETHEUS_MULTIPROC_DIR is not set or not a directory")
        self.path = path
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterable[Metric]:
        """Merge every process's file that holds anything."""
        files = []
        for path in glob.glob(os.path.join(self.path, "*.db")):
            try:
                if os.path.getsize(path) > 0:
                    files.append(path)
            except FileNotFoundError:  # removed by mark_process_dead meanwhile
                continue
        merge: Callable[..., Iterable[Metric]] = _PrometheusCollector.merge
        return merge(files, accumulate=True)


# The exporters started and not closed: a forked child (a gunicorn worker of
# a --preload app) starts their threads again. One fork hook for them all,
# registered once (a hook cannot be removed, and must not keep a closed
# exporter alive or restart it).
_running: weakref.WeakSet[MultiProcessExporter] = weakref.WeakSet()


def _restart_exporters_in_child() -> None:
    for exporter in list(_running):
        exporter._restart_in_child()


if hasattr(os, "register_at_fork"):  # pragma: no branch - absent on Windows only
    os.register_at_fork(after_in_child=_restart_exporters_in_child)


def register(
    sockets: Sockets, registry: CollectorRegistry | None = None, *, interval: float = 5.0
) -> SocketsCollector | MultiProcessExporter:
    """Expose ``sockets``' figures (:meth:`Sockets.stats`) to Prometheus.

    Args:
        sockets: The ``Sockets`` extension object.
        registry: Where to register the collector; prometheus-client's
            default ``REGISTRY`` if ``None``.
        interval: Multi-process mode only: seconds between copies.

    Returns:
        The registered :class:`SocketsCollector`; in prometheus-client's
        multi-process mode (``PROMETHEUS_MULTIPROC_DIR`` set when it was
        imported), the started :class:`MultiProcessExporter` instead, whose
        figures ``MultiProcessCollector`` reads (``registry`` is not used).

    Raises:
        ValueError: The registry already has metrics of these names, or
            ``interval`` is not a positive number.
    """
    if getattr(prometheus_values.ValueClass, "_multiprocess", False):
        if not isinstance(interval, (int, float)) or isinstance(interval, bool) or interval <= 0:
            raise ValueError(f"interval must be seconds > 0, not {interval!r}")
        exporter = MultiProcessExporter(sockets, float(interval))
        exporter.start()
        return exporter
    collector = SocketsCollector(sockets)
    (REGISTRY if registry is None else registry).register(collector)
    return collector
