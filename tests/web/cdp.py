"""A small Chrome DevTools Protocol client over aiohttp's websocket: enough to drive a real headless
Chromium through pages, clicks, key presses and form fills (playwright is not installed here, and
`--dump-dom` cannot click)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
         "--hide-scrollbars", "--remote-debugging-port=0", "--window-size=1280,1600")


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[Any]] = {}
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            data = json.loads(msg.data)
            fut = self.pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(RuntimeError(str(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))

    async def call(self, method: str, **params: Any) -> Any:
        n = next(self.ids)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.pending[n] = fut
        await self.ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
        return await asyncio.wait_for(fut, 30)

    async def eval(self, expression: str) -> Any:
        res = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                value = await self.eval(expression)
            except RuntimeError:
                value = None
            if value:
                return value
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"waiting for {expression}; page: {await self.text()}"[:3000])
            await asyncio.sleep(0.05)

    async def text(self) -> str:
        try:
            return str(await self.eval("document.body ? document.body.innerText : ''"))
        except RuntimeError:
            return ""

    async def goto(self, url: str) -> None:
        await self.navigating(self.call("Page.navigate", url=url))

    async def navigating(self, action: Any) -> None:
        """Run `action` (a coroutine that makes the page navigate) and wait for the new document to load."""
        await self.eval("window.__before_navigation = true")
        await action
        await self.wait_for("!window.__before_navigation && document.readyState === 'complete'")

    async def click(self, selector: str) -> None:
        await self.navigating(self.eval(f"document.querySelector({json.dumps(selector)}).click()"))

    async def press(self, key: str) -> None:
        """A real key press through the input pipeline (the page's keyboard shortcuts see a trusted event)."""
        async def down_up() -> None:
            await self.call("Input.dispatchKeyEvent", type="keyDown", key=key, text=key)
            await self.call("Input.dispatchKeyEvent", type="keyUp", key=key)

        await self.navigating(down_up())


@contextlib.asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A headless Chromium with a fresh profile and one page, driven over the DevTools protocol."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank",
                                                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        port = None
        while port is None:
            line = await asyncio.wait_for(proc.stderr.readline(), 30)
            if not line:
                raise RuntimeError("chromium exited before opening the DevTools port")
            found = re.search(rb"DevTools listening on ws://[^:]+:(\d+)/", line)
            port = int(found.group(1)) if found else None
        drain = asyncio.ensure_future(proc.stderr.read())  # keep the pipe from filling up
        async with aiohttp.ClientSession() as http:
            for _ in range(100):
                targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                pages = [t for t in targets if t.get("type") == "page"]
                if pages:
                    break
                await asyncio.sleep(0.1)
            ws = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
            page = Page(ws)
            await page.call("Page.enable")
            await page.call("Runtime.enable")
            try:
                yield page
            finally:
                page.reader.cancel()
                await ws.close()
        drain.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        shutil.rmtree(profile, ignore_errors=True)
