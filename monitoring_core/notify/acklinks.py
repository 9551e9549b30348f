"""Acknowledge links: signed, expiring, single-use tokens carried by alert and incident pages.

A token is `BODY.SIG`: BODY is base64url JSON `{k: "alert"|"incident", i: id, r: recipient,
e: expiry (unix seconds), j: token id}`, SIG the base64url HMAC-SHA256 of BODY under a secret
kept in the `settings` table (row `ack_link_secret`, made on first use). Whoever holds the link
may acknowledge that one alert or incident once before it expires, as the recipient it was sent
to; nothing else. Verification is pure (`verify(secret, token, now)`); `ack_link_uses` records
used token ids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import orjson
from sqlalchemy import Connection, select
from sqlalchemy.dialects.postgresql import insert

from monitoring_core.audit import system_actor
from monitoring_core.schema import ack_link_uses, settings

__all__ = [
    "LINK_TTL",
    "AckClaim",
    "LinkRefused",
    "ack_url",
    "link_secret",
    "mark_used",
    "mint",
    "verify",
]

LINK_TTL = timedelta(hours=24)  # a page older than a day is stale; the UI still works
SECRET_KEY = "ack_link_secret"
KINDS = ("alert", "incident")
_MAX_TOKEN = 1024


class LinkRefused(ValueError):
    """A link that cannot be used; `reason` is forged | expired | used | malformed."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AckClaim:
    kind: str  # alert | incident
    target_id: int
    recipient: str  # who the link was sent to (a channel's name)
    expires_at: datetime
    jti: str


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def mint(
    secret: bytes,
    *,
    kind: str,
    target_id: int,
    recipient: str,
    now: datetime,
    ttl: timedelta = LINK_TTL,
) -> str:
    """A token for acknowledging `kind` `target_id` as `recipient`, valid until now + ttl."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    payload = {
        "k": kind,
        "i": int(target_id),
        "r": recipient,
        "e": int((now + ttl).timestamp()),
        "j": secrets.token_urlsafe(12),
    }
    body = _b64(orjson.dumps(payload))
    return f"{body}.{_sign(secret, body)}"


def verify(secret: bytes, token: str, now: datetime) -> AckClaim:
    """The claim of a genuine, unexpired token; LinkRefused otherwise (never another error)."""
    if len(token) > _MAX_TOKEN or token.count(".") != 1:
        raise LinkRefused("malformed", "this is not an acknowledge link")
    body, signature = token.split(".")
    if not hmac.compare_digest(_sign(secret, body), signature):
        raise LinkRefused("forged", "this link was not issued by this system")
    try:
        data = orjson.loads(_unb64(body))
        claim = AckClaim(
            kind=str(data["k"]),
            target_id=int(data["i"]),
            recipient=str(data["r"]),
            expires_at=datetime.fromtimestamp(int(data["e"]), UTC),
            jti=str(data["j"]),
        )
    except (ValueError, KeyError, TypeError, orjson.JSONDecodeError):
        raise LinkRefused("malformed", "this is not an acknowledge link") from None
    if claim.kind not in KINDS:
        raise LinkRefused("malformed", "this is not an acknowledge link")
    if now >= claim.expires_at:
        raise LinkRefused("expired", f"this link expired at {claim.expires_at.isoformat()}")
    return claim


def link_secret(conn: Connection) -> bytes:
    """The signing secret, created on first use (32 random bytes, hex in `settings`)."""
    conn.execute(
        insert(settings)
        .values(key=SECRET_KEY, value=secrets.token_hex(32), updated_by=system_actor("acklinks"))
        .on_conflict_do_nothing(index_elements=["key"])
    )
    value = conn.execute(select(settings.c.value).where(settings.c.key == SECRET_KEY)).scalar_one()
    return bytes.fromhex(str(value))


def mark_used(conn: Connection, claim: AckClaim, *, actor: str, now: datetime) -> None:
    """Record the token as used; LinkRefused("used") when it was used before."""
    row = conn.execute(
        insert(ack_link_uses)
        .values(jti=claim.jti, kind=claim.kind, target_id=claim.target_id, actor=actor, used_at=now)
        .on_conflict_do_nothing(index_elements=["jti"])
        .returning(ack_link_uses.c.jti)
    ).first()
    if row is None:
        raise LinkRefused("used", "this link has already been used")


def ack_url(api_public_url: str, token: str) -> str:
    return f"{api_public_url.rstrip('/')}/ack/{token}"
