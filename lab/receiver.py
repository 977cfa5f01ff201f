"""A webhook receiver for trying the bridge: prints every request it gets.

    python lab/receiver.py [--port 9000]

Answers 200 to anything on any path; prints method, path, and the fields (query string
for GET, form body for POST), one request per line.
"""

from __future__ import annotations

import argparse
import json
from urllib.parse import parse_qsl

from aiohttp import web


async def handle(request: web.Request) -> web.Response:
    body = await request.read()
    fields = dict(parse_qsl(body.decode() if body else request.query_string))
    print(f"{request.method} {request.path} {json.dumps(fields, ensure_ascii=False)}", flush=True)
    return web.Response(text="ok")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, default=9000)
    args = parser.parse_args()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    web.run_app(app, host="127.0.0.1", port=args.port, print=lambda _: None)


if __name__ == "__main__":
    main()
