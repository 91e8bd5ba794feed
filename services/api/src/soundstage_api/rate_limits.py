"""Request rate limits, counted in Redis by the `limits` library (moving windows, shared by every API
replica): per API key on every request, per client address on job-creating requests made without a key
(RATE_LIMIT_PER_MINUTE / _PER_HOUR, the Magenta RT API's names and defaults), and per address on wrong
keys (FAILED_KEY_LIMIT_PER_MINUTE: past it the address's keyed requests are refused before any lookup, so
guessing keys is slowed to that pace).

A refusal is 429 with `Retry-After` (seconds until the window has room) and a code. When Redis cannot be
reached the limits are not enforced (logged): a rate limit must not take the API down with it.

The client address is the connection's, or the one a trusted proxy forwards (uvicorn's
`--forwarded-allow-ips` / FORWARDED_ALLOW_IPS).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from limits import RateLimitItem, RateLimitItemPerHour, RateLimitItemPerMinute
from limits.storage import RedisStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.concurrency import run_in_threadpool

from soundstage.errors import AppError, ErrorCode
from soundstage.settings import Settings

logger = logging.getLogger(__name__)
NAMESPACE = "soundstage"


@dataclass(frozen=True)
class _Rule:
    item: RateLimitItem
    what: str  # for the message: "requests per API key"

    def describe(self) -> str:
        return f"{self.item.amount} {self.what} per {self.item.GRANULARITY.name}"


class RateLimits:
    def __init__(self, settings: Settings) -> None:
        self._limiter = MovingWindowRateLimiter(
            RedisStorage(settings.require_redis_url(), socket_connect_timeout=1, socket_timeout=1)
        )
        self._per_key = _rules((RateLimitItemPerMinute, settings.key_rate_limit_per_minute, "requests per API key"))
        self._per_address = _rules(
            (RateLimitItemPerMinute, settings.rate_limit_per_minute, "job submissions without an API key"),
            (RateLimitItemPerHour, settings.rate_limit_per_hour, "job submissions without an API key"),
        )
        self._failed_keys = _rules((RateLimitItemPerMinute, settings.failed_key_limit_per_minute, "wrong API keys"))

    async def admit_key(self, owner: str) -> None:
        """Count a request by the key whose owner hash is ``owner``; 429 `rate_limited` past the limit."""
        await self._hit(self._per_key, ("key", owner), ErrorCode.RATE_LIMITED)

    async def admit_address(self, request: Request) -> None:
        """Count a job-creating request without a key from the request's address."""
        await self._hit(self._per_address, ("address", client_address(request)), ErrorCode.RATE_LIMITED)

    async def refuse_guessing(self, request: Request) -> None:
        """429 `too_many_failed_keys` while the request's address has used up its wrong keys."""
        if self._failed_keys:
            await self._check(self._failed_keys, ("failed-keys", client_address(request)))

    async def count_failed_key(self, request: Request) -> None:
        identity = ("failed-keys", client_address(request))
        for rule in self._failed_keys:
            await self._run(self._limiter.hit, rule.item, NAMESPACE, *identity)

    async def _hit(self, rules: list[_Rule], identity: tuple[str, str], code: ErrorCode) -> None:
        for rule in rules:
            if await self._run(self._limiter.hit, rule.item, NAMESPACE, *identity) is False:
                raise _refusal(self._limiter, rule, identity, code)

    async def _check(self, rules: list[_Rule], identity: tuple[str, str]) -> None:
        for rule in rules:
            if await self._run(self._limiter.test, rule.item, NAMESPACE, *identity) is False:
                raise _refusal(self._limiter, rule, identity, ErrorCode.TOO_MANY_FAILED_KEYS)

    @staticmethod
    async def _run(call: Callable[[RateLimitItem, str, str, str], bool], *args: Any) -> bool | None:
        """``call(*args)`` off the event loop; None (and a warning) when Redis does not answer."""
        try:
            return await run_in_threadpool(call, *args)
        except Exception as error:
            logger.warning("rate limits not enforced: Redis unavailable (%s)", error)
            return None


def _rules(*specs: tuple[type[RateLimitItem], int, str]) -> list[_Rule]:
    return [_Rule(kind(amount), what) for kind, amount, what in specs if amount > 0]


def _refusal(limiter: MovingWindowRateLimiter, rule: _Rule, identity: tuple[str, str], code: ErrorCode) -> AppError:
    try:
        reset = limiter.get_window_stats(rule.item, NAMESPACE, *identity).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
    except Exception:
        retry_after = rule.item.get_expiry()
    message = (
        f"Too many wrong API keys from this address: at most {rule.describe()}; try again in {retry_after} s."
        if code is ErrorCode.TOO_MANY_FAILED_KEYS
        else f"Rate limit reached: at most {rule.describe()}; try again in {retry_after} s."
    )
    return AppError(
        code,
        message,
        status_code=429,
        headers={"Retry-After": str(retry_after)},
        details={"limit": rule.item.amount, "per": rule.item.GRANULARITY.name, "retry_after": retry_after},
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"
