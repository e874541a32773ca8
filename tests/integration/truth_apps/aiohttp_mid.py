#!/usr/bin/python3
"""Middle service of the runtime ground-truth tests: aiohttp server and aiohttp client on
one asyncio event loop (protocol in node_mid.js). A background task calls /timer/<k>
every TIMER_MS."""
import asyncio
import sys

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

PORT, LEAF, TIMER_MS = (int(a) for a in sys.argv[1:4])


async def call_leaf(session, path, headers):
    async with session.get(f"http://127.0.0.1:{LEAF}{path}", headers=headers) as r:
        await r.read()
        return r.status


async def work(request):
    mode, ident = request.match_info["mode"], request.match_info["id"]
    n = int(request.query.get("n", "1"))
    pause = int(request.query.get("sleep", "0"))
    headers = {}
    if mode == "fwd" and "traceparent" in request.headers:
        headers["traceparent"] = request.headers["traceparent"]
    for i in range(n):
        if pause and i == n - 1:
            await asyncio.sleep(pause / 1000)
        await call_leaf(request.app["session"], f"/leaf/{ident}", headers)
    return web.Response(text="ok\n")


async def timer(app):
    k = 0
    while True:
        await asyncio.sleep(TIMER_MS / 1000)
        k += 1
        try:
            await call_leaf(app["session"], f"/timer/{k}", {})
        except Exception:
            pass


async def on_startup(app):
    app["session"] = ClientSession(connector=TCPConnector(limit=16),
                                   timeout=ClientTimeout(total=30))
    app["timer"] = asyncio.ensure_future(timer(app))


app = web.Application()
app.router.add_get("/work/{mode:fwd|drop}/{id}", work)
app.on_startup.append(on_startup)
web.run_app(app, host="127.0.0.1", port=PORT, print=None, access_log=None)
