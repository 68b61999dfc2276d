"""A local fake of Discord (REST + gateway) that the real discord.py client talks to over loopback.

REST: the routes discord.py calls at login (users/@me, oauth2/applications/@me, gateway/bot), command
sync, channel messages (JSON and multipart), threads, interaction callbacks (with Discord's rules:
one initial response, 3 s deadline -> 10062, second response -> 40060) and webhook follow-ups/edits.
Every response is `Content-Type: application/json`, which discord.py requires to parse it.

Gateway: HELLO, IDENTIFY -> READY + GUILD_CREATE (per shard: guild_id >> 22 % shard_count),
heartbeat ACK, RESUME -> RESUMED, and dispatch of INTERACTION_CREATE / MESSAGE_CREATE /
THREAD_CREATE events driven by the test (clicks, modal submissions, slash commands, thread replies).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

DISCORD_EPOCH = 1420070400000
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
SEND = (1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16) | (1 << 31) | (1 << 35) | (1 << 38)
DEFAULT_PERMS = SEND
_counter = itertools.count(1)


def snowflake() -> int:
    ms = int(time.time() * 1000) - DISCORD_EPOCH
    return (ms << 22) | (next(_counter) % (1 << 22))


def iso_now() -> str:
    return datetime.now(UTC).isoformat()


def user_payload(user_id: int, name: str, *, bot: bool = False) -> dict[str, Any]:
    return {"id": str(user_id), "username": name, "discriminator": "0", "global_name": name, "avatar": None,
            "bot": bot, "public_flags": 0, "flags": 0}


@dataclass
class Interaction:
    id: int
    token: str
    payload: dict[str, Any]
    dispatched_at: float = 0.0  # perf_counter when the INTERACTION_CREATE frame was sent
    first_response_at: float | None = None
    response: dict[str, Any] | None = None
    callbacks: list[tuple[int, dict[str, Any] | None]] = field(default_factory=list)  # (status, body)
    followups: list[dict[str, Any]] = field(default_factory=list)
    original_edits: list[dict[str, Any]] = field(default_factory=list)
    followed_up: asyncio.Event = field(default_factory=asyncio.Event)  # set on the first follow-up


@dataclass
class Shard:
    ws: web.WebSocketResponse
    shard_id: int = 0
    shard_count: int = 1
    seq: int = 0
    session_id: str = ""
    identified: asyncio.Event = field(default_factory=asyncio.Event)


class FakeDiscord:
    """One guild, one text channel, one bot application; state is inspectable by the test."""

    def __init__(self, *, token: str = "fake-bot-token", channel_id: int = 200000000000000001,
                 guild_id: int = 100000000000000001, deadline_s: float = 3.0) -> None:
        self.token = token
        self.app_id = 700000000000000001
        self.bot_id = 700000000000000001
        self.guild_id = guild_id
        self.channel_id = channel_id
        self.deadline_s = deadline_s
        self.messages: dict[int, dict[str, Any]] = {}
        self.channel_edits: list[tuple[int, dict[str, Any]]] = []  # (message id, body) of PATCH channel message
        self.threads: dict[int, dict[str, Any]] = {}
        self.interactions: dict[int, Interaction] = {}
        self.by_token: dict[str, Interaction] = {}
        self.commands: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self.shards: list[Shard] = []
        self.ready = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.users: dict[int, dict[str, Any]] = {}
        # A test may hold follow-ups and/or webhook edits (a slow or unreachable Discord): requests of
        # the kinds in `hold_kinds` wait until `hold` is set; `held` counts the ones waiting right now.
        self.hold = asyncio.Event()
        self.hold_kinds: set[str] = set()
        self.held = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def start(self) -> FakeDiscord:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get("/api/v10/users/@me", self._me)
        r.add_get("/api/v10/oauth2/applications/@me", self._application)
        r.add_get("/api/v10/gateway/bot", self._gateway_bot)
        r.add_get("/api/v10/gateway", self._gateway_plain)
        r.add_put("/api/v10/applications/{app}/commands", self._sync_commands)
        r.add_get("/api/v10/channels/{channel}", self._get_channel)
        r.add_post("/api/v10/channels/{channel}/messages", self._create_message)
        r.add_patch("/api/v10/channels/{channel}/messages/{message}", self._edit_message)
        r.add_post("/api/v10/channels/{channel}/messages/{message}/threads", self._create_thread)
        r.add_post("/api/v10/interactions/{id}/{token}/callback", self._callback)
        r.add_post("/api/v10/webhooks/{app}/{token}", self._followup)
        r.add_patch("/api/v10/webhooks/{app}/{token}/messages/{message}", self._edit_webhook_message)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        for shard in list(self.shards):
            await shard.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        # exactly "application/json": discord.py compares the header verbatim (no "; charset=...")
        return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": "application/json"})

    def _error(self, status: int, code: int, message: str) -> web.Response:
        return self._json({"message": message, "code": code}, status)

    def _authorised(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _body(self, request: web.Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """JSON body, or multipart payload_json plus attachments (as Discord accepts)."""
        if request.content_type.startswith("multipart/"):
            payload: dict[str, Any] = {}
            files: list[dict[str, Any]] = []
            reader = await request.multipart()
            async for part in reader:
                if part.name == "payload_json":
                    payload = json.loads(await part.text())
                else:
                    data = await part.read()
                    files.append({"id": str(snowflake()), "filename": part.filename, "size": len(data),
                                  "url": f"http://127.0.0.1:{self.port}/attachments/{part.filename}",
                                  "proxy_url": f"http://127.0.0.1:{self.port}/attachments/{part.filename}",
                                  "content": data})
            return payload, files
        if request.can_read_body:
            return await request.json(), []
        return {}, []

    def channel_payload(self, channel_id: int | None = None) -> dict[str, Any]:
        cid = channel_id or self.channel_id
        if cid in self.threads:
            return self.threads[cid]
        return {"id": str(cid), "type": 0, "guild_id": str(self.guild_id), "name": "labeling", "position": 0,
                "permission_overwrites": [], "nsfw": False, "parent_id": None, "topic": None,
                "last_message_id": None, "rate_limit_per_user": 0, "flags": 0}

    def _message(self, channel_id: int, body: dict[str, Any], files: list[dict[str, Any]], *,
                 webhook: bool = False) -> dict[str, Any]:
        mid = snowflake()
        atts = [{k: v for k, v in f.items() if k != "content"} for f in files]
        msg = {
            "id": str(mid), "channel_id": str(channel_id), "guild_id": str(self.guild_id),
            "author": user_payload(self.bot_id, "labelbot", bot=True), "content": body.get("content") or "",
            "timestamp": iso_now(), "edited_timestamp": None, "tts": False, "mention_everyone": False,
            "mentions": [], "mention_roles": [], "attachments": atts, "embeds": body.get("embeds") or [],
            "pinned": False, "type": 0, "flags": int(body.get("flags") or 0),
            "components": body.get("components") or [],
        }
        if webhook:
            msg["webhook_id"] = str(self.app_id)
        msg["_files"] = files
        self.messages[mid] = msg
        return msg

    @staticmethod
    def public(msg: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in msg.items() if not k.startswith("_")}

    # ------------------------------------------------------------------ REST: login and commands

    async def _me(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", "/users/@me"))
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        return self._json(user_payload(self.bot_id, "labelbot", bot=True))

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        return self._json({"id": str(self.app_id), "name": "labelbot", "icon": None, "description": "",
                           "bot_public": False, "bot_require_code_grant": False,
                           "owner": user_payload(1, "owner"), "verify_key": "0" * 64, "flags": 0,
                           "summary": "", "rpc_origins": [], "interactions_endpoint_url": None})

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url, "shards": 1,
                           "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0,
                                                   "max_concurrency": 1}})

    async def _gateway_plain(self, request: web.Request) -> web.Response:
        return self._json({"url": self.gateway_url})

    async def _sync_commands(self, request: web.Request) -> web.Response:
        body, _ = await self._body(request)
        out = []
        for cmd in body:
            cmd = dict(cmd)
            cmd.setdefault("type", 1)
            cmd.update({"id": str(snowflake()), "application_id": str(self.app_id), "version": str(snowflake()),
                        "default_member_permissions": cmd.get("default_member_permissions"), "nsfw": False})
            out.append(cmd)
        self.commands = out
        return self._json(out)

    # ------------------------------------------------------------------ REST: channels and messages

    async def _get_channel(self, request: web.Request) -> web.Response:
        cid = int(request.match_info["channel"])
        if cid != self.channel_id and cid not in self.threads:
            return self._error(404, 10003, "Unknown Channel")
        return self._json(self.channel_payload(cid))

    async def _create_message(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return self._error(401, 0, "401: Unauthorized")
        cid = int(request.match_info["channel"])
        if cid != self.channel_id and cid not in self.threads:
            return self._error(404, 10003, "Unknown Channel")
        body, files = await self._body(request)
        return self._json(self.public(self._message(cid, body, files)))

    async def _edit_message(self, request: web.Request) -> web.Response:
        mid = int(request.match_info["message"])
        if mid not in self.messages:
            return self._error(404, 10008, "Unknown Message")
        body, _ = await self._body(request)
        self.channel_edits.append((mid, body))
        msg = self.messages[mid]
        msg.update({k: v for k, v in body.items() if k in ("content", "embeds", "components")})
        msg["edited_timestamp"] = iso_now()
        return self._json(self.public(msg))

    async def _create_thread(self, request: web.Request) -> web.Response:
        mid = int(request.match_info["message"])
        if mid not in self.messages:
            return self._error(404, 10008, "Unknown Message")
        body, _ = await self._body(request)
        thread = {"id": str(mid), "type": 11, "guild_id": str(self.guild_id),
                  "parent_id": request.match_info["channel"],
                  "name": body.get("name", "thread"), "owner_id": str(self.bot_id), "message_count": 0,
                  "member_count": 1, "rate_limit_per_user": 0, "flags": 0, "last_message_id": None,
                  "thread_metadata": {"archived": False, "auto_archive_duration": body.get("auto_archive_duration",
                                                                                           1440),
                                      "archive_timestamp": iso_now(), "locked": False}}
        self.threads[mid] = thread
        await self.dispatch("THREAD_CREATE", {**thread, "newly_created": True})
        return self._json(thread, 201)

    # ------------------------------------------------------------------ REST: interactions

    async def _callback(self, request: web.Request) -> web.Response:
        now = time.perf_counter()
        inter = self.interactions.get(int(request.match_info["id"]))
        body, files = await self._body(request)
        if inter is None or inter.token != request.match_info["token"]:
            return self._error(404, 10062, "Unknown interaction")
        if inter.first_response_at is None and now - inter.dispatched_at > self.deadline_s:
            inter.callbacks.append((404, body))
            return self._error(404, 10062, "Unknown interaction")
        if inter.response is not None:
            inter.callbacks.append((400, body))
            return self._error(400, 40060, "Interaction has already been acknowledged.")
        inter.first_response_at = now
        inter.response = body
        inter.callbacks.append((200, body))
        rtype = int(body.get("type", 0))
        data = body.get("data") or {}
        resource: dict[str, Any] = {"type": rtype}
        if rtype == 4:
            msg = self._message(int(inter.payload["channel_id"]), data, files, webhook=True)
            inter.followups.append(msg)
            resource["message"] = self.public(msg)
        return self._json({"interaction": {"id": str(inter.id), "type": inter.payload["type"],
                                           "response_message_loading": rtype == 5,
                                           "response_message_ephemeral": bool(int(data.get("flags") or 0) & 64)},
                           "resource": resource})

    async def _wait_if_held(self, kind: str) -> None:
        if kind in self.hold_kinds and not self.hold.is_set():
            self.held += 1
            try:
                await self.hold.wait()
            finally:
                self.held -= 1

    def _by_token(self, request: web.Request) -> Interaction | None:
        inter = self.by_token.get(request.match_info["token"])
        if inter is None or request.match_info["app"] != str(self.app_id):
            return None
        return inter

    async def _followup(self, request: web.Request) -> web.Response:
        await self._wait_if_held("followup")
        inter = self._by_token(request)
        body, files = await self._body(request)
        if inter is None or inter.response is None:
            return self._error(404, 10015, "Unknown Webhook")
        msg = self._message(int(inter.payload["channel_id"]), body, files, webhook=True)
        inter.followups.append(msg)
        inter.followed_up.set()
        return self._json(self.public(msg))

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        await self._wait_if_held("edit")
        inter = self._by_token(request)
        body, _ = await self._body(request)
        if inter is None or inter.response is None:
            return self._error(404, 10015, "Unknown Webhook")
        target = request.match_info["message"]
        if target == "@original":
            inter.original_edits.append(body)
            if inter.response.get("type") in (6, 7) and "message" in inter.payload:
                mid = int(inter.payload["message"]["id"])
            else:
                mid = int(inter.followups[0]["id"]) if inter.followups else 0
        else:
            mid = int(target)
        msg = self.messages.get(mid)
        if msg is None:
            return self._error(404, 10008, "Unknown Message")
        msg.update({k: v for k, v in body.items() if k in ("content", "embeds", "components")})
        msg["edited_timestamp"] = iso_now()
        return self._json(self.public(msg))

    # ------------------------------------------------------------------ gateway

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        shard = Shard(ws)
        self.shards.append(shard)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None}))
        try:
            async for frame in ws:
                if frame.type != WSMsgType.TEXT:
                    continue
                msg = json.loads(frame.data)
                op = msg.get("op")
                if op == 1:
                    await ws.send_str(json.dumps({"op": 11, "d": None, "s": None, "t": None}))
                elif op == 2:
                    await self._identify(shard, msg["d"])
                elif op == 6:
                    shard.session_id = msg["d"]["session_id"]
                    shard.identified.set()
                    await self._send(shard, "RESUMED", {})
        finally:
            if shard in self.shards:
                self.shards.remove(shard)
        return ws

    async def _identify(self, shard: Shard, data: dict[str, Any]) -> None:
        if data.get("token") != self.token:
            await shard.ws.close(code=4004, message=b"Authentication failed.")
            return
        shard.shard_id, shard.shard_count = data.get("shard") or [0, 1]
        shard.session_id = secrets.token_hex(16)
        mine = (self.guild_id >> 22) % shard.shard_count == shard.shard_id
        await self._send(shard, "READY", {
            "v": 10, "user": user_payload(self.bot_id, "labelbot", bot=True),
            "guilds": [{"id": str(self.guild_id), "unavailable": True}] if mine else [],
            "session_id": shard.session_id, "resume_gateway_url": self.gateway_url,
            "shard": [shard.shard_id, shard.shard_count],
            "application": {"id": str(self.app_id), "flags": 0},
        })
        if mine:
            await self._send(shard, "GUILD_CREATE", self.guild_payload())
        shard.identified.set()
        self.ready.set()

    def guild_payload(self) -> dict[str, Any]:
        gid = str(self.guild_id)
        return {
            "id": gid, "name": "Labelers", "icon": None, "splash": None, "discovery_splash": None,
            "owner_id": "1", "afk_channel_id": None, "afk_timeout": 300, "verification_level": 0,
            "default_message_notifications": 0, "explicit_content_filter": 0,
            "roles": [{"id": gid, "name": "@everyone", "permissions": str(DEFAULT_PERMS), "position": 0, "color": 0,
                       "hoist": False, "managed": False, "mentionable": False, "flags": 0}],
            "emojis": [], "stickers": [], "features": [], "mfa_level": 0, "application_id": None,
            "system_channel_id": None, "system_channel_flags": 0, "rules_channel_id": None, "vanity_url_code": None,
            "description": None, "banner": None, "premium_tier": 0, "preferred_locale": "en-US",
            "public_updates_channel_id": None, "nsfw_level": 0, "premium_progress_bar_enabled": False,
            "joined_at": iso_now(), "large": False, "unavailable": False, "member_count": 2, "voice_states": [],
            "members": [], "channels": [self.channel_payload()], "threads": list(self.threads.values()),
            "presences": [], "stage_instances": [], "guild_scheduled_events": [], "soundboard_sounds": [],
        }

    async def _send(self, shard: Shard, event: str, data: dict[str, Any]) -> float:
        shard.seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": shard.seq, "d": data})
        sent = time.perf_counter()
        await shard.ws.send_str(frame)
        return sent

    def _shard_for_guild(self) -> Shard:
        for shard in self.shards:
            if (self.guild_id >> 22) % shard.shard_count == shard.shard_id and shard.identified.is_set():
                return shard
        raise RuntimeError("no gateway connection for the guild (is the bot connected?)")

    async def dispatch(self, event: str, data: dict[str, Any]) -> float:
        if not self.shards:
            return time.perf_counter()
        return await self._send(self._shard_for_guild(), event, data)

    # ------------------------------------------------------------------ driving the bot (test side)

    def member(self, user_id: int, *, permissions: int = DEFAULT_PERMS, name: str | None = None) -> dict[str, Any]:
        user = user_payload(user_id, name or f"user{user_id % 10000}")
        self.users[user_id] = user
        return {"user": user, "roles": [], "joined_at": iso_now(), "deaf": False, "mute": False, "flags": 0,
                "permissions": str(permissions), "nick": None, "avatar": None, "pending": False,
                "communication_disabled_until": None}

    def _interaction(self, itype: int, data: dict[str, Any], user_id: int, *, message: dict[str, Any] | None = None,
                     permissions: int = DEFAULT_PERMS, channel_id: int | None = None) -> Interaction:
        iid = snowflake()
        token = secrets.token_urlsafe(24)
        cid = channel_id or (int(message["channel_id"]) if message else self.channel_id)
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.app_id), "type": itype, "data": data,
            "guild_id": str(self.guild_id), "channel_id": str(cid), "channel": self.channel_payload(cid),
            "member": self.member(user_id, permissions=permissions), "token": token, "version": 1,
            "app_permissions": str(SEND), "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {"0": str(self.guild_id)}, "context": 0,
            "attachment_size_limit": 26214400,
        }
        if message is not None:
            payload["message"] = self.public(message)
        inter = Interaction(iid, token, payload)
        self.interactions[iid] = inter
        self.by_token[token] = inter
        return inter

    async def send_interaction(self, inter: Interaction) -> Interaction:
        """Dispatch (or re-dispatch: a gateway replay) an INTERACTION_CREATE."""
        sent = await self.dispatch("INTERACTION_CREATE", inter.payload)
        if not inter.dispatched_at:
            inter.dispatched_at = sent
        return inter

    async def click(self, message_id: int, custom_id: str, user_id: int, **kw: Any) -> Interaction:
        msg = self.messages[message_id]
        inter = self._interaction(3, {"custom_id": custom_id, "component_type": 2}, user_id, message=msg, **kw)
        return await self.send_interaction(inter)

    async def submit_modal(self, custom_id: str, values: dict[str, str], user_id: int, *,
                           message_id: int | None = None) -> Interaction:
        rows = [{"type": 1, "components": [{"type": 4, "custom_id": k, "value": v}]} for k, v in values.items()]
        msg = self.messages.get(message_id) if message_id else None
        inter = self._interaction(5, {"custom_id": custom_id, "components": rows}, user_id, message=msg)
        return await self.send_interaction(inter)

    async def slash(self, path: list[str], options: dict[str, Any], user_id: int, *,
                    permissions: int = DEFAULT_PERMS, channel_id: int | None = None) -> Interaction:
        """`/label <path...> option:value`; user-typed options (type 6) are resolved like Discord does."""
        cmd = next((c for c in self.commands if c["name"] == "label"), None)
        if cmd is None:
            raise RuntimeError("the bot has not registered /label")
        resolved: dict[str, Any] = {}
        opts = []
        for name, value in options.items():
            if value is None:
                continue
            if isinstance(value, dict) and "user" in value:
                uid = int(value["user"])
                resolved.setdefault("users", {})[str(uid)] = user_payload(uid, f"user{uid % 10000}")
                opts.append({"name": name, "type": 6, "value": str(uid)})
            elif isinstance(value, int):
                opts.append({"name": name, "type": 4, "value": value})
            else:
                opts.append({"name": name, "type": 3, "value": value})
        node: list[dict[str, Any]] = opts
        for depth, part in enumerate(reversed(path)):
            node = [{"name": part, "type": 1 if depth == 0 else 2, "options": node}]
        data = {"id": cmd["id"], "name": "label", "type": 1, "options": node}
        if resolved:
            data["resolved"] = resolved
        inter = self._interaction(2, data, user_id, permissions=permissions, channel_id=channel_id)
        return await self.send_interaction(inter)

    async def thread_reply(self, thread_id: int, user_id: int, content: str) -> dict[str, Any]:
        msg = self._message(thread_id, {"content": content}, [])
        msg["author"] = user_payload(user_id, f"user{user_id % 10000}")
        msg["member"] = {k: v for k, v in self.member(user_id).items() if k != "user"}
        await self.dispatch("MESSAGE_CREATE", self.public(msg))
        return msg

    # ------------------------------------------------------------------ inspection

    def channel_messages(self) -> list[dict[str, Any]]:
        return [m for m in self.messages.values() if m["channel_id"] == str(self.channel_id) and "webhook_id" not in m]

    @staticmethod
    async def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.01) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the bot")
            await asyncio.sleep(interval)
