"""A fake OpenAI-compatible chat-completions server on loopback (aiohttp in a thread of its own).

Model ids: `alpha` and `beta` answer with their name and the prompt; `flaky` answers 429 (Retry-After: 0)
to its first request per prompt, then succeeds; `broken` always answers 500. Requests are recorded.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from aiohttp import web


class FakeOpenAI:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.flaky_seen: set[str] = set()
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(dict(request.headers))
        model = body.get("model")
        question = body["messages"][-1]["content"]
        if model == "broken":
            return web.json_response({"error": {"message": "boom"}}, status=500)
        if model == "flaky" and question not in self.flaky_seen:
            self.flaky_seen.add(question)
            return web.json_response({"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0"})
        if model not in ("alpha", "beta", "flaky"):
            return web.json_response({"error": {"message": f"unknown model {model}"}}, status=404)
        text = f"{model} says: the answer to '{question}' (max {body.get('max_tokens')} tokens)"
        return web.json_response({"id": "cmpl-1", "object": "chat.completion", "model": model,
                                  "choices": [{"index": 0, "finish_reason": "stop",
                                               "message": {"role": "assistant", "content": text}}]})

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        self._ready.set()
        self.loop.run_forever()

    def start(self) -> FakeOpenAI:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        async def _cleanup() -> None:
            await self.runner.cleanup()

        asyncio.run_coroutine_threadsafe(_cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
