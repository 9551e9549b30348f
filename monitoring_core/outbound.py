"""Outbound targets: which addresses the system may call on a user's behalf (HTTP and TCP checks,
runbook `http` steps, Prometheus scrapes), and connections that keep to it.

Always refused: link-local ranges (169.254.0.0/16, fe80::/10, where cloud metadata services
answer), the known metadata addresses and host names, unspecified, multicast and broadcast
addresses. Loopback and private ranges are allowed by default (self-hosted targets live
there); `MONITORING_OUTBOUND_DENY_PRIVATE=1` refuses them too, and
`MONITORING_OUTBOUND_ALLOW` (host names, `.suffix` names and CIDRs, comma-separated) limits
targets to those listed; a listed private range is allowed even when private ones are denied.

The check runs on every connection (`open_url`, `connect_tcp`), on the very address then
connected to, so neither a redirect nor a DNS answer that changes after a check can reach a
refused address.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import socket
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from monitoring_core.config import Settings, load_settings

__all__ = [
    "METADATA_HEADERS",
    "METADATA_HOSTS",
    "OutboundPolicy",
    "TargetRefused",
    "check_host",
    "check_target",
    "connect_tcp",
    "current_policy",
    "literal_refusal",
    "open_url",
    "refusal",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]

METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
    }
)
# Headers that metadata services require precisely so that a forwarded request fails.
METADATA_HEADERS = frozenset(
    {
        "metadata-flavor",
        "metadata",
        "x-google-metadata-request",
        "x-aws-ec2-metadata-token",
        "x-aws-ec2-metadata-token-ttl-seconds",
    }
)
_ALWAYS_DENIED = tuple(
    ipaddress.ip_network(n)
    for n in (
        "169.254.0.0/16",  # IPv4 link-local: AWS, GCP, Azure, OpenStack metadata
        "fe80::/10",  # IPv6 link-local
        "fd00:ec2::254/128",  # AWS metadata over IPv6
        "100.100.100.200/32",  # Alibaba Cloud metadata
        "168.63.129.16/32",  # Azure wire server
        "0.0.0.0/8",
        "::/128",
        "224.0.0.0/4",
        "ff00::/8",
        "255.255.255.255/32",
    )
)
_PRIVATE = tuple(
    ipaddress.ip_network(n)
    for n in (
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, often a cluster's own network
        "fc00::/7",
    )
)


class TargetRefused(ValueError):
    """The outbound policy does not allow this target."""


@dataclass(frozen=True)
class OutboundPolicy:
    deny_private: bool = False
    allow: tuple[str, ...] = ()  # host names, ".suffix" names, CIDRs; empty: no allow-list

    def listed(self, host: str, address: IPAddress) -> bool:
        """Whether the allow-list names this host or a network holding this address."""
        host = host.lower().rstrip(".")
        for entry in self.allow:
            network = _network(entry)
            if network is not None:
                if address.version == network.version and address in network:
                    return True
            elif host == entry.lower() or (entry.startswith(".") and host.endswith(entry.lower())):
                return True
        return False


def _network(entry: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    try:
        return ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return None


def current_policy(settings: Settings | None = None) -> OutboundPolicy:
    """The policy the environment sets (through `config`)."""
    settings = settings or load_settings()
    return OutboundPolicy(settings.outbound_deny_private, settings.outbound_allow)


def refusal(host: str, address: IPAddress, policy: OutboundPolicy) -> str | None:
    """Why `host` at `address` may not be called, or None. Pure."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if host.lower().rstrip(".") in METADATA_HOSTS:
        return f"{host} is a cloud metadata host"
    if any(address.version == n.version and address in n for n in _ALWAYS_DENIED):
        return f"{host} resolves to {address}, a link-local, metadata or non-unicast address"
    listed = policy.listed(host, address)
    if policy.allow and not listed:
        return f"{host} ({address}) is not on the outbound allow-list"
    private = any(address.version == n.version and address in n for n in _PRIVATE)
    if policy.deny_private and private and not listed:
        return f"{host} resolves to {address}, a private or loopback address"
    return None


def literal_refusal(host: str) -> str | None:
    """What can be refused without resolving (for validation, a 422 at once): a metadata host
    name, or an address literal in an always-refused range. Pure."""
    try:
        address = ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return (
            f"{host} is a cloud metadata host"
            if host.lower().rstrip(".") in METADATA_HOSTS
            else None
        )
    return refusal(host, address, OutboundPolicy())


def _resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(
    host: str, port: int, policy: OutboundPolicy, *, resolve: Resolver = _resolve
) -> list[str]:
    """The addresses of `host` to connect to; TargetRefused if any of them is refused (a name
    that answers with one good and one bad address is refused as a whole)."""
    if host.lower().rstrip(".") in METADATA_HOSTS:
        raise TargetRefused(f"{host} is a cloud metadata host")
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in resolve(host, port)]
        except OSError as exc:
            raise TargetRefused(f"{host} does not resolve: {exc}") from exc
    for address in addresses:
        reason = refusal(host, address, policy)
        if reason:
            raise TargetRefused(reason)
    return [str(a) for a in addresses]


def check_target(url: str, policy: OutboundPolicy, *, resolve: Resolver = _resolve) -> None:
    """Refuse (TargetRefused) a URL that is not http(s) or whose host the policy refuses."""
    _check_scheme(url)
    parts = urlsplit(url)
    assert parts.hostname is not None  # _check_scheme refused a URL without one
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise TargetRefused(f"bad port in {parts.netloc!r}") from exc
    check_host(parts.hostname, port, policy, resolve=resolve)


def connect_tcp(
    address: tuple[str, int],
    timeout: float | None = None,
    source_address: tuple[str, int] | None = None,
    *,
    policy: OutboundPolicy,
) -> socket.socket:
    """`socket.create_connection`, to an address the policy allows (checked, then pinned)."""
    host, port = address
    last: OSError | None = None
    for ip in check_host(host, port, policy):
        try:
            return socket.create_connection((ip, port), timeout, source_address)
        except OSError as exc:
            last = exc
    raise last or OSError(f"cannot connect to {host}:{port}")


class _HTTPConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(connect_tcp, policy=policy)


class _HTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, *args: Any, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(connect_tcp, policy=policy)


# do_open's stub types the class as a protocol without our keyword-only `policy`.
_AnyHTTP: Any = _HTTPConnection
_AnyHTTPS: Any = _HTTPSConnection


class _HTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__()
        self.policy = policy

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(_AnyHTTP, req, policy=self.policy)


class _HTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: OutboundPolicy) -> None:
        super().__init__()
        self.policy = policy

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        context = self._context  # type: ignore[attr-defined]
        return self.do_open(_AnyHTTPS, req, policy=self.policy, context=context)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is the answer (raised as HTTPError with its status), not a hop to elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class _CheckedRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects to http(s) only (urllib would follow one to ftp:// outside the policy)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        _check_scheme(newurl)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _check_scheme(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http(s) URLs with a host can be called")


def open_url(
    request: urllib.request.Request,
    *,
    timeout: float,
    policy: OutboundPolicy,
    follow_redirects: bool = False,
) -> http.client.HTTPResponse:
    """urllib's `open` without environment proxies, with every connection (redirects too)
    held to `policy`; TargetRefused for a refused target, urllib's errors otherwise."""
    _check_scheme(request.full_url)  # the host is checked when connecting, hop by hop
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.ProxyHandler({}),
        _HTTPHandler(policy),
        _HTTPSHandler(policy),
        _CheckedRedirects() if follow_redirects else _NoRedirects(),
    ]
    response: http.client.HTTPResponse = urllib.request.build_opener(*handlers).open(
        request, timeout=timeout
    )
    return response
