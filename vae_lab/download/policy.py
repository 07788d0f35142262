"""Which hosts a download may talk to: public addresses only, unless the operator allows local ones.

A download box in a web page is a server-side request forgery waiting to happen: the server
fetches what the page names, with the server's network position (its loopback, its LAN, the
cloud metadata service at 169.254.169.254). `HostPolicy` says no to every address that is not
globally routable, at two points:

* `check(url)` resolves the URL's host name and refuses it if *any* of its addresses is not
  public (checked before the first request and again at every redirect hop);
* the `requests.Session` from `session()` checks the address each connection actually reached
  (the socket's peer), so a name that resolves to a public address for the check and to
  127.0.0.1 for the connection (DNS rebinding) is refused too.

The standalone app and the WebUI tab use `HostPolicy()` (public only); `serve
--allow-local-downloads` and the CLI's own `download` command, whose user types the URL
themselves, allow local hosts.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from vae_lab.errors import DownloadError


class RefusedHost(DownloadError):
    """The URL (or a redirect, or the connection) leads to an address the policy does not allow."""


def _addresses(host: str, port: int) -> list[ipaddress._BaseAddress]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as err:
        raise DownloadError(f"cannot resolve the host {host}: {getattr(err, 'strerror', None) or err}") from None
    return [_ip(info[4][0]) for info in infos]


def _ip(text: str):
    addr = ipaddress.ip_address(text.split("%", 1)[0])  # drop an IPv6 zone id
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return addr


@dataclass(frozen=True)
class HostPolicy:
    """`allow_local=False`: only globally routable addresses (`ipaddress.ip_address(a).is_global`)."""

    allow_local: bool = False

    def allows(self, addr) -> bool:
        return self.allow_local or bool(_ip(str(addr)).is_global)

    def check(self, url: str) -> None:
        """Raise `RefusedHost` when `url`'s host resolves to an address this policy refuses.

        `download(policy=…)` calls it before the first request and at every redirect hop."""
        if self.allow_local:
            return
        p = urlsplit(url)
        host = p.hostname
        if not host:
            raise DownloadError(f"the URL {url.split('?')[0]!r} has no host")
        port = p.port or (443 if p.scheme == "https" else 80)
        for addr in _addresses(host, port):
            if not self.allows(addr):
                raise RefusedHost(self._refusal(host, addr))

    def check_peer(self, sock, host: str) -> None:
        """Raise `RefusedHost` when a connected socket's peer is an address this policy refuses."""
        if self.allow_local:
            return
        peer = sock.getpeername()[0]
        if not self.allows(peer):
            raise RefusedHost(self._refusal(host, _ip(peer)))

    check_url = check

    @staticmethod
    def _refusal(host: str, addr) -> str:
        return (f"refusing to download from {host}: it is a local or private address ({addr}); "
                "only public hosts are allowed here (the operator can allow local ones: serve --allow-local-downloads)")

    def session(self):
        """A `requests.Session` whose every connection is checked against this policy after it connects."""
        import requests

        s = requests.Session()
        if not self.allow_local:
            adapter = _CheckedAdapter(self)
            s.mount("http://", adapter)
            s.mount("https://", adapter)
        return s


def _checked_classes(policy: HostPolicy):
    """urllib3 connection-pool classes whose connections call `policy.check_peer` on connect."""
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    def new_conn(base):
        def _new_conn(self):
            sock = base._new_conn(self)
            try:
                policy.check_peer(sock, self.host)
            except RefusedHost:
                sock.close()
                raise
            return sock
        return _new_conn

    http = type("CheckedHTTPConnection", (HTTPConnection,), {"_new_conn": new_conn(HTTPConnection)})
    https = type("CheckedHTTPSConnection", (HTTPSConnection,), {"_new_conn": new_conn(HTTPSConnection)})
    return (type("CheckedHTTPConnectionPool", (HTTPConnectionPool,), {"ConnectionCls": http}),
            type("CheckedHTTPSConnectionPool", (HTTPSConnectionPool,), {"ConnectionCls": https}))


try:
    from requests.adapters import HTTPAdapter as _HTTPAdapter
except ImportError:  # pragma: no cover - requests is a dependency
    _HTTPAdapter = object


class _CheckedAdapter(_HTTPAdapter):
    """A requests adapter whose pools check each new connection's peer address."""

    def __init__(self, policy: HostPolicy, **kwargs):
        self._policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        http, https = _checked_classes(self._policy)
        self.poolmanager.pool_classes_by_scheme = {"http": http, "https": https}
