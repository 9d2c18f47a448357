"""The hub's HTTP API as the node uses it: requests (RFC 9421-signed where the hub wants to know the member),
answers read with a size limit and parsed as strict JSON, and every failure as a typed error:
:class:`~node.errors.HubUnavailableError` (network, 5xx, 429: retried with backoff, after ``Retry-After`` if the
hub asks) or :class:`~node.errors.HubProtocolError` (any other refusal, or an answer out of protocol).

The hub's URL is read from the current registry at every request, so a hub handover is followed without a
restart; every signature is by the own key the registry says is valid now (node/own_keys.py), at the
service's clock.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from federation.protocol import httpsig, strictjson
from federation.protocol.envelope import parse_time
from federation.protocol.errors import IpdnError, StrictJsonError
from node.config import NodeConfig
from node.errors import HubProtocolError, HubUnavailableError
from node.records.service import NodeService
from node.sync import logtrust

ENVELOPES_PATH = "/api/v1/envelopes"
LOG_PATH = "/api/v1/log"
REGISTRY_PATH = "/api/v1/registry"
CHECKPOINT_PATH = "/api/v1/log/checkpoint"  # the hub's, and the node's own (what it accepted, co-signed)
INCLUSION_PATH = "/api/v1/log/proof/inclusion"
CONSISTENCY_PATH = "/api/v1/log/proof/consistency"
COSIGNATURES_PATH = "/api/v1/log/cosignatures"
GOVERNANCE_PATH = "/api/v1/governance"
PULL_COMPONENTS = ("@method", "@target-uri")  # a pull has no body to digest; its query is in the target URI


@dataclass(frozen=True, slots=True)
class PushAnswer:
    results: dict[int, dict[str, Any]]  # the hub's result per index of the batch
    checkpoint: bytes | None  # the signed checkpoint covering what it acknowledged (re-serialized)


@dataclass(frozen=True, slots=True)
class LogPage:
    entries: list[tuple[int, Any]]  # (position, envelope JWS object)
    size: int | None
    received: list[datetime] = field(default_factory=list)  # the hub's receipt time of each entry (§8.3)
    checkpoint: bytes | None = None  # the hub's checkpoint at the page's end, when it sent one (re-serialized)


class HubClient:
    """The hub's HTTP API as the node uses it; errors come out as HubUnavailableError/HubProtocolError."""

    def __init__(self, session: aiohttp.ClientSession, config: NodeConfig, service: NodeService) -> None:
        self.session, self.config, self.service = session, config, service

    def _url(self, path: str) -> str:
        return self.service.registry.registry.hub_url.rstrip("/") + path

    async def _request(self, method: str, path: str, *, wait: float = 0, url: str | None = None, **kw: Any) -> bytes:
        url = url or self._url(path)
        timeout = aiohttp.ClientTimeout(total=self.config.request_timeout + wait,
                                        connect=self.config.connect_timeout)
        try:
            async with self.session.request(method, url, timeout=timeout, **kw) as resp:
                body = await self._read(resp)
                if resp.status >= 500 or resp.status == 429:
                    raise HubUnavailableError(f"{method} {url}: {resp.status} {_problem_text(body)}",
                                              retry_after=_retry_after(resp.headers.get("Retry-After")))
                if not 200 <= resp.status < 300:
                    raise HubProtocolError(f"{method} {url}: {resp.status} {_problem_text(body)}")
                return body
        except (aiohttp.ClientError, TimeoutError, OSError) as e:
            raise HubUnavailableError(f"{method} {url}: {type(e).__name__}: {e}") from e

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        limit, size, chunks = self.config.max_response_bytes, 0, []
        async for chunk in resp.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > limit:
                raise HubProtocolError(f"answer from the hub is larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def _json(self, body: bytes) -> Any:
        try:
            return strictjson.loads(body, strictjson.JsonLimits(max_bytes=self.config.max_response_bytes))
        except StrictJsonError as e:
            raise HubProtocolError(f"the hub's answer is not strict JSON: {e.message}") from e

    async def fetch_registry(self, version: int | None = None) -> bytes:
        return await self._request("GET", REGISTRY_PATH + (f"?version={version}" if version else ""))

    async def _signed_post(self, path: str, body: bytes) -> Any:
        """POST ``body`` signed with the member key valid now (RFC 9421, as a push); the JSON answer.

        Raises:
            HubError; KeyNotValidError (no own key is valid now).
        """
        headers = {"Content-Type": "application/json"}
        now = self.service.clock()
        key = await self.service.signing_key(now)
        # The nonce makes every signature unique: a retry of the same batch within the same second is
        # not a replay to the hub.
        headers.update(httpsig.sign_request("POST", self._url(path), headers, body,
                                            private_key=key.key, keyid=key.kid, created=int(now.timestamp()),
                                            nonce=secrets.token_urlsafe(16)))
        return self._json(await self._request("POST", path, data=body, headers=headers))

    async def push(self, envelopes: Sequence[bytes]) -> PushAnswer:
        """Send envelopes (their stored wire bytes, not re-serialized); the hub's result per index."""
        doc = await self._signed_post(ENVELOPES_PATH, b'{"envelopes":[' + b",".join(envelopes) + b"]}")
        try:
            results = {int(r["index"]): r for r in doc["results"] if isinstance(r, dict)}
        except (KeyError, TypeError, ValueError) as e:
            raise HubProtocolError(f"push answer without results: {e}") from e
        checkpoint = doc.get("checkpoint")
        return PushAnswer(results, logtrust.dump(checkpoint) if checkpoint is not None else None)

    async def checkpoint(self) -> bytes:
        """The hub's latest signed checkpoint, as received."""
        return await self._request("GET", CHECKPOINT_PATH)

    async def peer_checkpoint(self, peer_url: str) -> bytes:
        """The checkpoint a peer node accepted (with its co-signature), as received."""
        return await self._request("GET", CHECKPOINT_PATH, url=peer_url.rstrip("/") + CHECKPOINT_PATH)

    async def _proof(self, path: str, params: dict[str, int]) -> list[bytes]:
        doc = self._json(await self._request("GET", path, params={k: str(v) for k, v in params.items()}))
        if not isinstance(doc, dict) or any(doc.get(k) != v for k, v in params.items()):
            raise HubProtocolError(f"{path} answered another proof than asked ({params})")
        return logtrust.proof_hashes(doc.get("proof"))

    async def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        return await self._proof(INCLUSION_PATH, {"index": index, "size": size})

    async def consistency_proof(self, first: int, second: int) -> list[bytes]:
        return await self._proof(CONSISTENCY_PATH, {"from": first, "to": second})

    async def post_cosignature(self, size: int, signature: dict[str, str]) -> None:
        body = json.dumps({"size": size, "signature": signature}, separators=(",", ":")).encode()
        await self._signed_post(COSIGNATURES_PATH, body)

    async def submit_governance(self, documents: Sequence[dict[str, str]]) -> dict[str, Any]:
        """POST signed governance documents (self-authenticating, no HTTP signature); the hub's answer."""
        body = json.dumps({"documents": list(documents)}, separators=(",", ":")).encode()
        doc = self._json(await self._request("POST", GOVERNANCE_PATH, data=body,
                                             headers={"Content-Type": "application/json"}))
        if not isinstance(doc, dict):
            raise HubProtocolError("the governance answer is not a JSON object")
        return doc

    def _identify(self, path: str) -> dict[str, str]:
        """RFC 9421 headers saying which member pulls (``@method`` and ``@target-uri``, query included), so the
        hub can show its last pull and lag (docs/adr/0008); none when no own key is valid now (an anonymous
        pull, as any reader's)."""
        now = self.service.clock()
        key = self.service.keys.signing_key(self.service.registry.registry, now)
        if key is None:
            return {}
        return httpsig.sign_request("GET", self._url(path), {}, b"", private_key=key.key, keyid=key.kid,
                                    created=int(now.timestamp()), nonce=secrets.token_urlsafe(16),
                                    components=PULL_COMPONENTS)

    async def log(self, after: int, limit: int, wait: int) -> LogPage:
        path = f"{LOG_PATH}?after={after}&limit={limit}&wait={wait}"
        doc = self._json(await self._request("GET", path, wait=wait, headers=self._identify(path)))
        try:
            entries = [(e["position"], e["envelope"]) for e in doc["entries"]]
            size = doc.get("size")
            received = [parse_time(e["received_at"]) for e in doc["entries"]]
            checkpoint = doc.get("checkpoint")
        except (KeyError, TypeError, AttributeError, IpdnError) as e:
            raise HubProtocolError(f"log page is malformed: {e}") from e
        if not all(type(p) is int for p, _ in entries):
            raise HubProtocolError("log positions must be integers")
        return LogPage(entries, size if type(size) is int else None, received,
                       logtrust.dump(checkpoint) if checkpoint is not None else None)


def _retry_after(value: str | None) -> float | None:
    """RFC 9110 §10.2.3 Retry-After in delay-seconds (the hub's form); an HTTP-date or garbage: None."""
    return float(value) if value is not None and value.strip().isdigit() else None


def _problem_text(body: bytes) -> str:
    """The reason and detail of an RFC 9457 answer, or the start of whatever else came back."""
    try:
        doc = strictjson.loads(body)
        return f"{doc.get('reason', '')}: {doc.get('detail', '')}".strip(": ")
    except (IpdnError, AttributeError):
        return body[:200].decode("utf-8", "replace")
