"""A Telphin API client, written from the public facts (shared/spec/telphin-facts.md,
"What real Telphin sends"; the public SDKs' calls), not from the bridge's code: what an
integration moving from Telphin keeps unchanged but for its base URL and credentials.

It signs in with ``client_credentials``, asks ``/user/`` who it is, finds extensions by
name in the client's extension list, subscribes to their events, starts callbacks, and
on a hangup fetches the call's history and, through the last ``cdr`` entry's
``record_uuid``, the recording's ``storage_url``, which it downloads with a plain GET.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp


class TelphinError(Exception):
    """An answer the client did not expect (the status and the body)."""


class TelphinClient:
    def __init__(self, base: str, client_id: str, client_secret: str) -> None:
        self.base, self.client_id, self.client_secret = base.rstrip("/"), client_id, client_secret
        self.token: str | None = None
        self.session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.session.close()

    async def sign_in(self) -> dict[str, Any]:
        form = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }
        async with self.session.post(f"{self.base}/oauth/token", data=form) as r:
            if r.status != 200:
                raise TelphinError(f"token: {r.status} {await r.text()}")
            answer: dict[str, Any] = await r.json()
        self.token = answer["access_token"]
        return answer

    async def _call(self, method: str, path: str, expect: int = 200, body: Any = None) -> Any:
        if self.token is None:
            await self.sign_in()
        headers = {"Authorization": f"Bearer {self.token}"}
        url = f"{self.base}/api/ver1.0{path}"
        async with self.session.request(method, url, headers=headers, json=body) as r:
            if r.status != expect:
                raise TelphinError(f"{method} {path}: {r.status} {await r.text()}")
            return None if r.status == 204 else await r.json()

    async def user(self) -> dict[str, Any]:
        return dict(await self._call("GET", "/user/"))

    async def extension_id(self, name: str) -> int:
        """The id of the extension named ``client*short`` (as events name it)."""
        found = await self._call("GET", f"/client/@me/extension/?name={name}")
        if len(found) != 1:
            raise TelphinError(f"extension {name!r}: {len(found)} found")
        return int(found[0]["id"])

    async def subscribe(self, extension_id: int, event_type: str, url: str, method: str = "POST") -> int:
        body = {"url": url, "event_type": event_type, "method": method}
        return int((await self._call("POST", f"/extension/{extension_id}/event/", 201, body))["id"])

    async def callback(self, extension_id: int, src: str, dst: str) -> dict[str, Any]:
        return dict(await self._call("POST", f"/extension/{extension_id}/callback/", 201,
                                     {"src_num": [src], "dst_num": dst}))  # fmt: skip

    async def history(self, call_id: str) -> dict[str, Any]:
        return dict(await self._call("GET", f"/client/@me/call_history/{call_id}"))

    async def recording_of(self, call_id: str, tries: int = 20) -> bytes | None:
        """The recording of a call, as the CRM modules fetch it after a hangup: the last
        cdr entry's record_uuid, its storage_url, a plain download (retried a little while
        the recording is being finished)."""
        record_uuid = (await self.history(call_id))["cdr"][-1]["record_uuid"]
        if not record_uuid:
            return None
        for _ in range(tries):
            try:
                url = (await self._call("GET", f"/client/@me/record/{record_uuid}/storage_url/"))[
                    "record_url"
                ]
            except TelphinError:
                await asyncio.sleep(0.25)
                continue
            async with self.session.get(url) as r:  # no token: the link is enough
                if r.status != 200:
                    raise TelphinError(f"download: {r.status}")
                return await r.read()
        raise TelphinError(f"record {record_uuid} never became available")
