"""One HTTP GET for a download, with redirects followed by hand so that each hop is judged alone.

At every hop (the first URL and each `Location`):
* the access token is chosen for that URL only (`TokenPolicy.header_for`): never to a CDN or
  another host a redirect leads to, never over plain http;
* a caller's host policy (`check_hop(url)`, e.g. the standalone app's "public hosts only")
  may refuse the URL before anything is sent to it;
* https → http downgrades and non-http(s) targets are refused.

Failures are sorted by type, never by message text: a name that does not resolve or a refused
connection is `NoNetwork` (retrying cannot help, so it fails at once); timeouts, dropped
connections and 408/425/429/5xx are `Transient` (retried by the transfer); other statuses are
refusals. A refused response is described (status, content type, size), never echoed: its body
and reason phrase are the server's words, possibly written to be shown to the user.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from urllib.parse import urljoin, urlsplit

from vae_lab.download.checks import format_size, show_url
from vae_lab.download.tokens import WHERE_TO_SET, TokenPolicy
from vae_lab.errors import DownloadError, DownloadRefused, NoNetwork

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
MAX_REDIRECTS = 10
USER_AGENT = "vae-lab (A1111 extension)"

HopCheck = Callable[[str], None]
"""Called with every URL before it is requested; raises `DownloadError` to refuse it."""


class Transient(Exception):
    """A failure worth retrying (the partial stays)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def hop_check_of(policy) -> HopCheck | None:
    """A host policy as a hop check: a callable, an object with `check(url)`, or None."""
    if policy is None:
        return None
    if hasattr(policy, "check"):
        return policy.check
    if callable(policy):
        return policy
    raise TypeError(f"a download policy must be callable or have check(url), not {type(policy).__name__}")


def describe_response(resp) -> str:
    """ "HTTP 403, text/html, 1.2 kB": what a refused response was, without a byte of its body."""
    ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip() or "no content type"
    length = resp.headers.get("Content-Length", "")
    size = format_size(int(length)) if length.isdigit() else "unknown size"
    return f"HTTP {resp.status_code}, {ctype[:60]}, {size}"


def _causes(err: BaseException):
    """The exception and everything it wraps (urllib3 keeps the socket error in `reason` or the context)."""
    seen, stack = set(), [err]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [e.__cause__, e.__context__, getattr(e, "reason", None)]
        stack += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]


def _is_name_resolution(e: BaseException) -> bool:
    if isinstance(e, socket.gaierror):
        return True
    try:
        from urllib3.exceptions import NameResolutionError  # urllib3 2
    except ImportError:  # urllib3 1.26 (A1111's stack): the gaierror is in the context
        return False
    return isinstance(e, NameResolutionError)


def connection_failure(err: BaseException, url: str) -> Exception:
    """The error to raise for a connection that failed: NoNetwork, or Transient (retry)."""
    host = urlsplit(url).hostname
    causes = list(_causes(err))
    if any(_is_name_resolution(e) for e in causes):
        return NoNetwork(f"no network: could not resolve {host}", host=host, unresolved=True)
    if any(isinstance(e, ConnectionRefusedError) for e in causes):
        return NoNetwork(f"cannot reach {host}: the connection was refused", host=host)
    import requests

    if any(isinstance(e, (socket.timeout, TimeoutError, requests.Timeout)) for e in causes):
        return Transient(f"cannot reach {host}: timed out")
    errno_text = next((e.strerror for e in causes if isinstance(e, OSError) and e.strerror), None)
    return Transient(f"cannot reach {host}: {errno_text or type(err).__name__}")


class Http:
    """GETs through one `requests` session: per-hop tokens and host policy, typed failures."""

    def __init__(self, session, tokens: TokenPolicy, check_hop: HopCheck | None = None,
                 on_headers: Callable[[object], None] | None = None):
        self.session, self.tokens, self.check_hop = session, tokens, check_hop
        self.on_headers = on_headers or (lambda resp: None)

    def get(self, url: str, headers: dict[str, str], timeout):
        """The final 200/206/416 response (streaming; the caller closes it)."""
        import requests

        base = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT, **headers}
        asked = url
        for _ in range(MAX_REDIRECTS + 1):
            if self.check_hop is not None:
                self.check_hop(url)
            hop_headers = {**base, **self.tokens.header_for(url)}
            try:
                resp = self.session.get(url, headers=hop_headers, stream=True, allow_redirects=False,
                                        timeout=timeout, verify=True, auth=_no_netrc)
            except requests.RequestException as err:
                failure = connection_failure(err, url)
                if isinstance(err, (requests.ConnectionError, requests.Timeout)) or isinstance(failure, NoNetwork):
                    raise failure from None
                raise DownloadError(f"cannot download {show_url(url)}: {type(err).__name__}") from None
            try:
                self.on_headers(resp)
            except BaseException:
                resp.close()
                raise
            code = resp.status_code
            if code in REDIRECT_STATUS:
                location = resp.headers.get("Location")
                resp.close()
                url = self._next_hop(url, location)
                continue
            if code in (200, 206, 416):
                return resp
            resp.close()
            self._refuse(url, resp)
        raise DownloadRefused(f"{show_url(asked)}: more than {MAX_REDIRECTS} redirects")

    @staticmethod
    def _next_hop(url: str, location: str | None) -> str:
        if not location:
            raise DownloadRefused(f"{show_url(url)} redirected without a Location")
        nxt = urljoin(url, location)
        try:
            parts = urlsplit(nxt)
            parts.port  # noqa: B018  (raises ValueError on a malformed port)
        except ValueError:
            raise DownloadRefused(f"{show_url(url)} redirected to a malformed URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise DownloadRefused(f"{show_url(url)} redirected to a non-http(s) URL")
        if urlsplit(url).scheme == "https" and parts.scheme != "https":
            raise DownloadRefused(f"{show_url(url)} redirected from https to plain http; refusing")
        return nxt

    def _refuse(self, url: str, resp) -> None:
        host = urlsplit(url).hostname
        code = resp.status_code
        if code in TRANSIENT_STATUS:
            retry_after = resp.headers.get("Retry-After", "")
            raise Transient(f"{host} answered HTTP {code}", float(retry_after) if retry_after.isdigit() else None)
        if code in (401, 403):
            service = self.tokens.service_for(url)
            if service and self.tokens.token_for(url):
                hint = ("the token was refused: check it is valid and has read access"
                        + (", and accept the model's terms on its page" if service == "hf" else ""))
            elif service:
                hint = f"this file needs an access token — {WHERE_TO_SET[service]}"
            else:
                hint = "this file needs a login that VAE Lab cannot provide for this host"
            raise DownloadRefused(f"{host} refused the download (HTTP {code}): {hint}")
        if code == 404:
            raise DownloadRefused(f"not found (HTTP 404): {show_url(url)}")
        raise DownloadRefused(f"{host} refused the download ({describe_response(resp)})")


def _no_netrc(request):
    """An auth hook that adds nothing, so requests never pulls ~/.netrc credentials in."""
    return request
