"""The service behind the reference receiver in the interop tests (an ASGI app
the reference runs in-process, named by its `local_app_module`).

- /status/NNN: answers status NNN, body "status NNN" (none for 204 and 304)
- /download/N: answers N bytes of the pattern byte i = i % 251
- anything else: echoes the request body, and describes the request in
  headers: x-echo-method, x-echo-path, x-echo-query (the raw query string),
  x-echo-headers (JSON object of the request headers), x-echo-body-len,
  x-echo-body-sha256. A request header x-want-header: NAME=VALUE is returned
  as a response header.
"""

import hashlib
import json

PATTERN = bytes(range(251))


def pattern(n):
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


async def read_body(receive):
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    path = scope["path"]
    body = await read_body(receive)
    headers = [(b"content-type", b"application/octet-stream")]
    status = 200
    if path.startswith("/svc/status/"):
        status = int(path.rsplit("/", 1)[1])
        out = b"" if status in (204, 304) else f"status {status}".encode()
        headers = [(b"content-type", b"text/plain")]
    elif path.startswith("/svc/download/"):
        out = pattern(int(path.rsplit("/", 1)[1]))
    else:
        out = body
        seen = {}
        for name, value in scope["headers"]:
            name = name.decode("latin-1")
            value = value.decode("latin-1")
            seen[name] = value
            if name == "x-want-header":
                wanted, _, wanted_value = value.partition("=")
                headers.append((wanted.encode(), wanted_value.encode()))
        headers += [
            (b"x-echo-method", scope["method"].encode()),
            (b"x-echo-path", path.encode("utf-8")),
            (b"x-echo-query", scope["query_string"]),
            (b"x-echo-headers", json.dumps(seen, sort_keys=True).encode()),
            (b"x-echo-body-len", str(len(body)).encode()),
            (b"x-echo-body-sha256", hashlib.sha256(body).hexdigest().encode()),
        ]
    if scope["method"] == "HEAD":
        # Like any HTTP server: the length a GET would have, no body.
        headers.append((b"content-length", str(len(out)).encode()))
        out = b""
    else:
        headers.append((b"content-length", str(len(out)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": out})
