"""The HTTP floor: a trivial raw-ASGI app served exactly as Squall serves its API.

Same server stack as ``squall server`` (uvicorn with httptools, uvloop, one process, access
log off); the app reads the request body and answers a fixed small JSON document. The
throughput benchmark runs the same load against it, so Squall's figure can be read against
what the HTTP layer alone allows on this machine.

    python bench/hello_asgi.py [--port 0]     # prints "listening on http://127.0.0.1:PORT"
"""

from __future__ import annotations

import argparse
import asyncio
import socket

import uvicorn
import uvloop

BODY = b'{"n": 1}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(2048)
    config = uvicorn.Config(app, loop="none", http="httptools", lifespan="on", log_level="warning", access_log=False)
    server = uvicorn.Server(config)

    async def serve() -> None:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not task.done():
            await asyncio.sleep(0.01)
        print(f"listening on http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
        await task

    uvloop.run(serve())


if __name__ == "__main__":
    main()
