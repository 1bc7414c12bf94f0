"""Where the hub's Redis is, from its URL, and how to connect there.

Three kinds of URL:

* ``redis://``, ``rediss://`` (TLS) or ``unix://``: one Redis server,
  as redis-py reads them;
* ``redis+sentinel://[[user]:password@]host:port[,host:port...]/service[/db]``:
  the master Redis Sentinel names for ``service``, asked again at each
  new connection (so a failover is followed); ``?sentinel_password=`` for
  sentinels that require one;
* ``redis+cluster://[[user]:password@]host:port[,host:port...]``: a Redis
  Cluster, found from any of these nodes.

Every client made here is named after its role (CLIENT LIST shows it) and
never retries by itself: a command sent twice could publish twice.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any, Generic, TypeVar, Union
from urllib.parse import parse_qsl, unquote, urlsplit

import redis
import redis.cluster
import redis.sentinel
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = [
    "ClusterLocation",
    "Location",
    "Secret",
    "SentinelLocation",
    "SingleLocation",
    "dispose",
    "interrupt",
    "location_of",
]

T = TypeVar("T")

# Untyped in redis-py: called through Any.
_SENTINEL: Any = redis.sentinel.Sentinel
_SENTINEL_POOL: Any = redis.sentinel.SentinelConnectionPool
_CLUSTER_NODE: Any = redis.cluster.ClusterNode

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster")


class SingleLocation:
    """One Redis server (``redis://``, ``rediss://``, ``unix://``)."""

    clustered = False

    def __init__(self, url: str) -> None:
        redis.connection.parse_url(url)  # type: ignore[no-untyped-call]
        path = urlsplit(url).path.strip("/")
        if not url.lower().startswith("unix") and path and not path.isdigit():
            raise ValueError("the path must be a database number")
        self._url = url

    def client(
        self, name: str, timeout: float, single: bool, connect_timeout: float
    ) -> redis.Redis:
        """A client of the server. With ``single`` (a reader, a PING), one
        connection and its own timeouts whatever the URL says; else a pool
        whose timeouts the URL may set."""
        pool = redis.ConnectionPool.from_url(
            self._url,
            socket_connect_timeout=connect_timeout,
            socket_timeout=timeout,
            client_name=name,
            retry=Retry(NoBackoff(), 0),
        )
        if single:
            pool.connection_kwargs.update(
                socket_timeout=timeout, socket_connect_timeout=connect_timeout
            )
        return redis.Redis(connection_pool=pool, single_connection_client=single)


class SentinelLocation:
    """The master Redis Sentinel names for a service (``redis+sentinel://``)."""

    clustered = False

    def __init__(self, url: str) -> None:
        userinfo, hosts, path, query = _split_url(url, "redis+sentinel")
        parts = [p for p in path.split("/") if p]
        if not parts or len(parts) > 2 or (len(parts) == 2 and not parts[1].isdigit()):
            raise ValueError("the path must be /service or /service/db")
        self.service = unquote(parts[0])
        self.addresses = hosts
        self._options: dict[str, Any] = {"db": int(parts[1]) if len(parts) == 2 else 0}
        self._options.update(userinfo)
        self._sentinel_options: dict[str, Any] = {}
        for name, value in query:
            if name in ("sentinel_password", "sentinel_username"):
                self._sentinel_options[name.partition("_")[2]] = value
            else:
                raise ValueError(
                    f"unknown option {name!r}: only sentinel_password, sentinel_username"
                )

    def client(
        self, name: str, timeout: float, single: bool, connect_timeout: float
    ) -> redis.Redis:
        """A client of the service's master, asking the sentinels where it
        is at each new connection (``single``: one connection)."""
        sentinels = _SENTINEL(
            self.addresses,
            sentinel_kwargs={
                "socket_timeout": connect_timeout,
                "socket_connect_timeout": connect_timeout,
                "retry": Retry(NoBackoff(), 0),
                **self._sentinel_options,
            },
        )
        pool = _SENTINEL_POOL(
            self.service,
            sentinels,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            client_name=name,
            retry=Retry(NoBackoff(), 0),
            **self._options,
        )
        return redis.Redis(connection_pool=pool, single_connection_client=single)


class ClusterLocation:
    """A Redis Cluster (``redis+cluster://``)."""

    clustered = True

    def __init__(self, url: str) -> None:
        userinfo, hosts, path, query = _split_url(url, "redis+cluster")
        if path.strip("/") not in ("", "0"):
            raise ValueError("a cluster has database 0 only: no path, or /0")
        if query:
            raise ValueError(f"unknown option {query[0][0]!r}")
        self.addresses = hosts
        self._options: dict[str, Any] = dict(userinfo)

    def cluster(self, name: str, timeout: float, connect_timeout: float) -> redis.RedisCluster:
        """A cluster client: it routes each command to the node of its key's
        slot, and learns the slots again after a MOVED reply or a failure."""
        return redis.RedisCluster(
            startup_nodes=[_CLUSTER_NODE(host, port) for host, port in self.addresses],
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            client_name=name,
            retry=Retry(NoBackoff(), 0),
            **self._options,
        )

    def node_client(
        self, address: tuple[str, int], name: str, timeout: float, connect_timeout: float
    ) -> redis.Redis:
        """A one-connection client of the node at ``address`` (a reader)."""
        host, port = address
        return redis.Redis(
            host,
            port,
            socket_timeout=timeout,
            socket_connect_timeout=connect_timeout,
            client_name=name,
            retry=Retry(NoBackoff(), 0),
            single_connection_client=True,
            **self._options,
        )


Location = Union[SingleLocation, SentinelLocation, ClusterLocation]


def location_of(url: str) -> Location:
    """Where ``url`` says the hub's Redis is.

    Raises:
        ValueError: Not a Redis URL, or a malformed one (the message may
            quote the URL: callers show it without its password).
    """
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError("use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://")
    if scheme == "redis+sentinel":
        return SentinelLocation(url)
    if scheme == "redis+cluster":
        return ClusterLocation(url)
    return SingleLocation(url)


def _split_url(
    url: str, scheme: str
) -> tuple[dict[str, str], list[tuple[str, int]], str, list[tuple[str, str]]]:
    """``(username/password options, [(host, port)], path, query)`` of a
    URL with a list of hosts."""
    rest = url[len(scheme) + 3 :]
    rest, _, query = rest.partition("?")
    rest = rest.partition("#")[0]
    authority, slash, path = rest.partition("/")
    userinfo, at, hosts_text = authority.rpartition("@")
    options: dict[str, str] = {}
    if at:
        user, colon, password = userinfo.partition(":")
        if colon:
            if user:
                options["username"] = unquote(user)
            options["password"] = unquote(password)
        else:
            options["password"] = unquote(user)
    hosts = []
    for item in hosts_text.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(f"every host needs a port: {item.strip() or '(empty)'!r}")
        hosts.append((host.strip("[]"), int(port)))
    return options, hosts, slash + path, parse_qsl(query, keep_blank_values=True)


class Secret(Generic[T]):
    """A value kept out of ``repr`` and ``vars()`` dumps: the URL, its
    passwords, and redis-py clients (whose ``repr`` shows the password)."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "<secret>"


def interrupt(client: redis.Redis) -> None:
    """End a blocked read on ``client``'s connection from another thread."""
    sock = getattr(getattr(client, "connection", None), "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)


def dispose(client: Any) -> None:
    """Close ``client`` and its pool's sockets (the pool is ours: a client
    given a pool leaves it open)."""
    client.close()
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        pool.disconnect()
