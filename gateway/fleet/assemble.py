"""Build the fleet's shared pieces from settings (only when ``GATEWAY_REDIS_URL`` is set).

Imported lazily by the app, so the ``redis`` package is needed only by those who use it
(``pip install 'pbx-gateway[redis]'``).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.errors import ConfigError
from gateway.settings import Settings


@dataclass
class Fleet:
    """The Redis link and what is shared through it."""

    link: RedisLink
    share: SessionShare
    tokens: SharedTokens
    """The PBX session's token source: the fleet's one token, through ``share``."""
    slots: FleetSlots
    cache: SharedCache

    async def close(self) -> None:
        await self.link.close()


async def open_fleet(settings: Settings) -> Fleet | None:
    """Connect to Redis (or note it is not there yet: the link keeps trying)."""
    if settings.redis_url is None or settings.redis_token_key is None:
        return None
    link = RedisLink(
        settings.redis_url, prefix=settings.redis_prefix, timeout=settings.redis_timeout
    )
    await link.start()
    share = SessionShare(link, settings.redis_token_key)
    return Fleet(
        link=link,
        share=share,
        tokens=SharedTokens(share),
        slots=FleetSlots(
            link,
            limit=settings.pbx_max_concurrency,
            lease_seconds=settings.pbx_timeout + 10,  # longer than any one PBX call
            max_wait=settings.request_deadline,
        ),
        cache=SharedCache(
            link,
            ttl=settings.cache_ttl,
            stale_ttl=settings.stale_ttl,
            claim_seconds=settings.pbx_timeout * 2 + 10,  # a login and a query, with margin
            wait_seconds=settings.request_deadline,
            sealer=Sealer(settings.redis_token_key),
        ),
    )


try:
    from gateway.fleet.cache import SharedCache
    from gateway.fleet.link import RedisLink
    from gateway.fleet.sealing import Sealer
    from gateway.fleet.session_share import SessionShare
    from gateway.fleet.shared_tokens import SharedTokens
    from gateway.fleet.slots import FleetSlots
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "GATEWAY_REDIS_URL needs the redis extra: pip install 'pbx-gateway[redis]'"
    ) from exc
