"""Which webhook URLs may be called: the SSRF guard, at submit and again at each delivery.

A URL must be ``https`` (``http`` only where ``AIGC_WEBHOOK_ALLOW_HTTP`` says), with a host
that resolves only to global addresses. Loopback, private (RFC 1918, ULA), link-local (the
169.254.169.254 metadata service), shared, reserved, multicast and unspecified addresses are
refused, IPv4-mapped and 6to4/Teredo IPv6 forms by the IPv4 address they carry, unless
``AIGC_WEBHOOK_ALLOW_HOSTS`` names the host or address. The name is resolved once per delivery
and the connection goes to the address that was checked, so a DNS answer cannot change
between the check and the call.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

from shared.config import Settings
from shared.errors import InputError

MAX_URL = 2048
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Target:
    """A checked webhook URL: where to connect, and what to ask for there."""

    scheme: str
    host: str  # the name, for the Host header and TLS
    address: str  # the checked address the connection goes to
    port: int
    path: str


def check_url(url: str, settings: Settings, field: str = "webhook") -> Target:
    """Return the checked target of a webhook URL; InputError (naming ``field``) if refused."""

    try:
        return _target(url, settings)
    except ValueError as exc:
        raise InputError(f"webhook URL refused: {exc}", field=field) from None


def _target(url: str, settings: Settings) -> Target:
    if len(url) > MAX_URL:
        raise ValueError(f"over {MAX_URL} characters")
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.webhook_allow_http else ("https",)
    if parts.scheme not in allowed:
        raise ValueError(f"the scheme must be {' or '.join(allowed)}")
    if not parts.hostname or parts.username or parts.password:
        raise ValueError("it needs a host and no credentials")
    port = parts.port or (443 if parts.scheme == "https" else 80)  # a bad port: ValueError
    address = _resolve(parts.hostname, port, settings)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, address, port, path)


def _resolve(host: str, port: int, settings: Settings) -> str:
    """Return the first address of ``host``, once every address it resolves to is allowed."""
    allow = set(settings.webhook_allow_hosts)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ValueError(f"the host does not resolve ({exc})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    for address in addresses:
        if host not in allow and str(address) not in allow and not is_public(address):
            raise ValueError(f"{host} resolves to {address}, not a public address")
    if not addresses:
        raise ValueError("the host does not resolve")
    return str(addresses[0])


def is_public(address: Address) -> bool:
    """Return whether an address is globally routable (IPv6 forms that embed IPv4 included)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or (address.teredo or (None, None))[1]
        if embedded is not None:
            return is_public(embedded)
    return address.is_global and not address.is_multicast
