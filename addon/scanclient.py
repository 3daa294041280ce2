"""The HTTP call to the scanner: one pooled aiohttp session, one POST per request.

Every way the call can go wrong comes back as a :class:`ScanFailure` (never an
exception), so the caller cannot forget to fail closed.
"""

from __future__ import annotations

import asyncio

import aiohttp

from addon.scanning import Outcome, ScanFailure, parse_response

_MAX_ANSWER = 4 * 1024 * 1024  # a scanner answer is small; more is not a valid answer


class ScannerClient:
    def __init__(self, base_url: str, connections: int = 64):
        self.url = base_url.rstrip("/") + "/v1/scan"
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        # Created on first use: a session belongs to the running event loop.
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._connections, keepalive_timeout=60)
            # trust_env=False: the scanner is never reached through an HTTP proxy.
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False, auto_decompress=False)
        return self._session

    async def scan(self, payload: bytes, deadline_s: float) -> Outcome:
        session = self._get_session()
        try:
            async with asyncio.timeout(deadline_s):
                async with session.post(
                    self.url, data=payload, headers={"Content-Type": "application/json"}, allow_redirects=False
                ) as resp:
                    body = bytearray()
                    async for chunk in resp.content.iter_chunked(64 * 1024):
                        body += chunk
                        if len(body) > _MAX_ANSWER:
                            return ScanFailure("scanner-bad-answer", "the scanner's answer is too large")
                    return parse_response(resp.status, bytes(body))
        except TimeoutError:
            return ScanFailure("scanner-timeout", f"the scanner did not answer within {deadline_s * 1000:.0f} ms")
        except aiohttp.ClientError as exc:
            return ScanFailure("scanner-unreachable", f"the scanner could not be reached ({type(exc).__name__})")
        except OSError as exc:
            return ScanFailure("scanner-unreachable", f"the scanner could not be reached ({exc.strerror or exc})")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
