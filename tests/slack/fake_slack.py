"""A fake Slack Web API on 127.0.0.1 for tests and benchmarks: records every call, answers like Slack.

It answers chat.postMessage / update / postEphemeral, views.open, the files.uploadV2 steps
(files.getUploadURLExternal, the upload URL, files.completeUploadExternal), auth.test,
conversations.replies and apps.connections.open (with a Socket Mode websocket), and takes
response_url posts. Message and modal payloads are checked against Block Kit limits and rejected
like Slack would (`invalid_blocks`). `fail_next` makes the next calls of a method answer 429 with a
Retry-After header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from bot.adapters.slack.render import check_blocks, check_view

BOT_USER = "UBOT"
BOT_ID = "BBOT"
TEAM = "T1"


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    status: int
    ok: bool
    at: float = field(default_factory=time.monotonic)
    error: str | None = None
    result: dict[str, Any] | None = None  # what the fake answered


class FakeSlack:
    def __init__(self, token: str = "xoxb-test-token", app_token: str = "xapp-test-token", *,
                 validate: bool = True) -> None:
        self.token = token
        self.app_token = app_token
        self.validate = validate
        self.calls: list[Call] = []
        self.responses: list[tuple[str, dict[str, Any]]] = []  # response_url posts
        self.uploads: dict[str, bytes] = {}
        self.socket_received: list[dict[str, Any]] = []
        self._sockets: list[web.WebSocketResponse] = []
        self._fail: dict[str, list[tuple[int, int, str]]] = {}
        self._seq = 0
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.on_call: Callable[[Call], None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> FakeSlack:
        app = web.Application(client_max_size=20 * 1024 * 1024)
        app.router.add_post("/api/{method}", self._api)
        app.router.add_get("/api/{method}", self._api)
        app.router.add_post("/upload/{file_id}", self._upload)
        app.router.add_post("/response/{name}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, name: str) -> str:
        return f"{self.base}/response/{name}"

    # ------------------------------------------------------------------ test helpers

    def fail_next(self, method: str, times: int = 1, *, status: int = 429, retry_after: int = 1,
                  error: str = "ratelimited") -> None:
        """The next `times` calls of `method` fail: 429 + Retry-After by default, or any status and error."""
        self._fail.setdefault(method, []).extend([(status, retry_after, error)] * times)

    def ok_calls(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method and c.ok]

    def all_calls(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the fake Slack to see the expected calls")
            await asyncio.sleep(0.01)

    def next_ts(self) -> str:
        self._seq += 1
        return f"{1_700_000_000 + self._seq}.{self._seq:06d}"

    # ------------------------------------------------------------------ handlers

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        for key in ("blocks", "view", "files", "attachments"):
            if isinstance(args.get(key), str):
                with contextlib.suppress(ValueError):
                    args[key] = json.loads(args[key])
        return args

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        expected = self.app_token if method == "apps.connections.open" else self.token
        if auth != f"Bearer {expected}":
            return self._record(method, args, 200, {"ok": False, "error": "invalid_auth"})
        queued = self._fail.get(method)
        if queued:
            status, retry_after, error = queued.pop(0)
            self.calls.append(Call(method, args, status, False, error=error))
            headers = {"Retry-After": str(retry_after)} if status == 429 else {}
            return web.json_response({"ok": False, "error": error}, status=status, headers=headers)
        problems: list[str] = []
        if self.validate and method in ("chat.postMessage", "chat.update", "chat.postEphemeral"):
            if not isinstance(args.get("channel"), str) or not args.get("channel"):
                problems.append("channel_not_found")
            if not args.get("text") and not args.get("blocks"):
                problems.append("no_text")
            if len(args.get("text") or "") > 40000:
                problems.append("msg_too_long")
            problems += check_blocks(args.get("blocks") or [], "message")
        if self.validate and method == "views.open":
            if not args.get("trigger_id"):
                problems.append("invalid_trigger_id")
            problems += check_view(args.get("view") or {})
        if problems:
            return self._record(method, args, 200, {"ok": False, "error": "invalid_blocks", "problems": problems})
        return self._record(method, args, 200, self._answer(method, args))

    def _record(self, method: str, args: dict[str, Any], status: int, body: dict[str, Any]) -> web.Response:
        call = Call(method, args, status, bool(body.get("ok")), error=body.get("error"), result=body)
        self.calls.append(call)
        if self.on_call:
            self.on_call(call)
        return web.json_response(body, status=status)

    def _answer(self, method: str, args: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {"ok": True, "url": "https://fake.slack.test/", "team": "Fake", "user": "labelbot",
                    "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID, "is_enterprise_install": False}
        if method == "chat.postMessage":
            ts = self.next_ts()
            return {"ok": True, "channel": args["channel"], "ts": ts,
                    "message": {"type": "message", "ts": ts, "text": args.get("text", ""), "bot_id": BOT_ID,
                                "thread_ts": args.get("thread_ts")}}
        if method == "chat.update":
            return {"ok": True, "channel": args["channel"], "ts": args.get("ts"), "text": args.get("text", "")}
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": self.next_ts()}
        if method == "views.open":
            return {"ok": True, "view": {**(args.get("view") or {}), "id": f"V{self._seq:08d}"}}
        if method == "files.getUploadURLExternal":
            self._seq += 1
            file_id = f"F{self._seq:08d}"
            return {"ok": True, "upload_url": f"{self.base}/upload/{file_id}", "file_id": file_id}
        if method == "files.completeUploadExternal":
            files = args.get("files") or []
            return {"ok": True, "files": [{"id": f.get("id"), "title": f.get("title")} for f in files]}
        if method == "conversations.open":
            return {"ok": True, "channel": {"id": "D" + str(args.get("users", "")).split(",")[0]}}
        if method == "conversations.replies":
            return {"ok": True, "messages": [], "has_more": False}
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket"}
        return {"ok": True}

    async def _upload(self, request: web.Request) -> web.Response:
        data = await request.read()
        self.uploads[request.match_info["file_id"]] = data
        self.calls.append(Call("upload", {"file_id": request.match_info["file_id"], "bytes": len(data)}, 200, True))
        return web.Response(text=f"OK - {len(data)}", content_type="text/plain")

    async def _response_url(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.responses.append((request.match_info["name"], body))
        self.calls.append(Call("response_url", {"name": request.match_info["name"], **body}, 200, True))
        return web.Response(text="ok", content_type="text/plain")

    # ------------------------------------------------------------------ socket mode

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        self._sockets.append(ws)
        await ws.send_json({"type": "hello", "num_connections": 1, "debug_info": {"host": "fake"},
                            "connection_info": {"app_id": "A1"}})
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    self.socket_received.append(json.loads(msg.data))
        finally:
            self._sockets.remove(ws)
        return ws

    @property
    def socket_connected(self) -> bool:
        return bool(self._sockets)

    async def socket_send(self, envelope: dict[str, Any]) -> None:
        await self._sockets[-1].send_json(envelope)
