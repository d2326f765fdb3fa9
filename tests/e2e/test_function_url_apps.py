"""Real applications behind function URLs: a FastAPI app through Mangum (its code zip built
here from this venv's installed packages, never from the network) reached by HTTP, and a page
that a real browser (headless Chromium through Playwright) opens, renders and runs."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
from urllib.parse import urlsplit

from bench.vendored import app_zip
from tests.conftest import ROLE, create_function, require, unique_name
from tests.e2e.test_function_urls import header, request

# ------------------------------------------------------------------------ the FastAPI app

APP = r'''
import hashlib
import os
import sys
from typing import Annotated

from fastapi import Cookie, FastAPI, Form, Query, Request, Response, UploadFile
from mangum import Mangum
from pydantic import BaseModel, Field

app = FastAPI(title="shop")


class Order(BaseModel):
    item: str
    quantity: int = Field(gt=0)
    unit_price: float
    tags: list[str] = []


@app.get("/items/{item_id}")
def read_item(item_id: int, q: str | None = None, tag: Annotated[list[str], Query()] = [],
              session: Annotated[str | None, Cookie()] = None, theme: Annotated[str | None, Cookie()] = None):
    return {"item_id": item_id, "q": q, "tags": tag, "session": session, "theme": theme}


@app.get("/names/{name}")
def read_name(name: str, request: Request):
    return {"name": name, "path": request.url.path}


@app.post("/orders", status_code=201)
def create_order(order: Order, response: Response):
    response.set_cookie("last_order", order.item, httponly=True, path="/")
    response.set_cookie("order_count", str(order.quantity))
    response.headers["x-order-total"] = "%.2f" % (order.quantity * order.unit_price)
    return {"order": order.model_dump(), "total": order.quantity * order.unit_price}


@app.post("/upload")
async def upload(file: UploadFile, label: Annotated[str, Form()]):
    data = await file.read()
    return {"filename": file.filename, "content_type": file.content_type, "label": label,
            "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


@app.put("/raw")
async def raw(request: Request):
    data = await request.body()
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "content_type": request.headers.get("content-type")}


@app.get("/bytes")
def some_bytes():
    return Response(bytes(range(256)) * 4, media_type="application/octet-stream")


@app.get("/where")
def where():
    """Where each loaded top-level module came from (the zip, or somewhere else)."""
    found = {}
    for name, module in list(sys.modules.items()):
        if "." in name:
            continue
        path = getattr(module, "__file__", None) or next(iter(getattr(module, "__path__", None) or []), None)
        if path:
            found[name] = os.path.realpath(path)
    native = sys.modules["pydantic_core._pydantic_core"].__file__
    return {"task_root": os.path.realpath(os.environ["LAMBDA_TASK_ROOT"]), "modules": found,
            "pydantic_core_native": os.path.realpath(native), "python": list(sys.version_info[:2])}


handler = Mangum(app, lifespan="off")
'''

APP_DISTRIBUTIONS = ("fastapi", "mangum", "python-multipart")  # and all that they require
ZIPPED_LIMIT = 50 * 1024 * 1024  # Lambda's limits for a zip uploaded directly / its unzipped size
UNZIPPED_LIMIT = 250 * 1024 * 1024


def _app_zip() -> tuple[bytes, int, set[str]]:
    return app_zip(APP, APP_DISTRIBUTIONS)


def _public_url(lam, name: str) -> str:
    url = lam.create_function_url_config(FunctionName=name, AuthType="NONE")["FunctionUrl"]
    lam.add_permission(FunctionName=name, StatementId="public-url", Action="lambda:InvokeFunctionUrl", Principal="*",
                       FunctionUrlAuthType="NONE")
    return url


def test_a_fastapi_app_through_mangum_answers_at_its_url(lam):
    for module in ("fastapi", "mangum", "python_multipart", "packaging"):
        require(importlib.util.find_spec(module) is not None,
                f"{module} is not installed in this venv (the test extra has it: pip install -e '.[test]')")
    code, unzipped, names = _app_zip()
    assert {"fastapi", "starlette", "pydantic", "pydantic_core", "anyio", "typing_extensions", "annotated_types",
            "idna", "mangum", "python_multipart"} <= names
    assert len(code) < ZIPPED_LIMIT and unzipped < UNZIPPED_LIMIT, (len(code), unzipped)

    name = unique_name("fastapi")
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": code}, Timeout=30, MemorySize=512)
    lam.get_waiter("function_active_v2").wait(FunctionName=name, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600})
    url = _public_url(lam, name)

    # Every package the app loaded came from its own zip (the server's site-packages, also on
    # sys.path, would hide a package the zip lacks), the compiled pydantic_core included.
    status, _, body = request(url, "GET", "/where")
    assert status == 200, body
    where = json.loads(body)
    root = where["task_root"] + os.sep
    assert where["python"] == [3, 11]
    assert where["pydantic_core_native"].startswith(root) and where["pydantic_core_native"].endswith(".so")
    loaded = {n: p for n, p in where["modules"].items() if n in names}
    assert {"fastapi", "starlette", "pydantic", "pydantic_core", "anyio", "mangum"} <= set(loaded)
    assert {n: p for n, p in loaded.items() if not p.startswith(root)} == {}

    # A path parameter, a repeated query, the request's cookies.
    status, headers, body = request(url, "GET", "/items/42?q=hello%20world&tag=a&tag=b",
                                    headers={"Cookie": "session=abc123; theme=dark"})
    assert status == 200 and header(headers, "content-type") == ["application/json"], body
    assert json.loads(body) == {"item_id": 42, "q": "hello world", "tags": ["a", "b"], "session": "abc123",
                                "theme": "dark"}
    status, _, body = request(url, "GET", "/items/not-a-number")
    assert status == 422 and json.loads(body)["detail"][0]["loc"] == ["path", "item_id"]
    status, _, body = request(url, "GET", "/names/caf%C3%A9")
    assert status == 200 and json.loads(body) == {"name": "café", "path": "/names/café"}
    status, _, body = request(url, "GET", "/nowhere")
    assert status == 404 and json.loads(body) == {"detail": "Not Found"}

    # A JSON POST, answered 201 with two cookies set and a header of the app's.
    order = {"item": "widget", "quantity": 3, "unit_price": 2.5, "tags": ["blue"]}
    status, headers, body = request(url, "POST", "/orders", json.dumps(order).encode(),
                                    {"Content-Type": "application/json"})
    assert status == 201, body
    assert json.loads(body) == {"order": order, "total": 7.5} and header(headers, "x-order-total") == ["7.50"]
    cookies = sorted(header(headers, "set-cookie"))
    assert len(cookies) == 2 and cookies[0].startswith("last_order=widget;") and "HttpOnly" in cookies[0]
    assert cookies[1].startswith("order_count=3;"), cookies
    status, _, body = request(url, "POST", "/orders", b'{"item": "widget", "quantity": 0, "unit_price": 1}',
                              {"Content-Type": "application/json"})
    assert status == 422 and json.loads(body)["detail"][0]["loc"] == ["body", "quantity"]

    # Binary uploads: raw bytes, and a multipart file over Starlette's 1 MiB in-memory limit
    # (spooled to a temporary file: the app writes in /tmp, never next to its code).
    rng = random.Random(20240101)
    blob = rng.randbytes(1024 * 1024)
    status, _, body = request(url, "PUT", "/raw", blob, {"Content-Type": "application/octet-stream"})
    assert status == 200, body
    assert json.loads(body) == {"size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
                                "content_type": "application/octet-stream"}
    upload = rng.randbytes(1536 * 1024)
    boundary = "squall-" + hashlib.sha256(upload).hexdigest()[:16]
    multipart = b"".join([
        f'--{boundary}\r\nContent-Disposition: form-data; name="label"\r\n\r\nnightly backup\r\n'.encode(),
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="backup.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode(), upload, f"\r\n--{boundary}--\r\n".encode(),
    ])
    status, _, body = request(url, "POST", "/upload", multipart,
                              {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 200, body
    assert json.loads(body) == {"filename": "backup.bin", "content_type": "application/octet-stream",
                                "label": "nightly backup", "size": len(upload),
                                "sha256": hashlib.sha256(upload).hexdigest()}

    # A binary answer (Mangum base64-encodes it; the URL sends the bytes).
    status, headers, body = request(url, "GET", "/bytes")
    assert status == 200 and body == bytes(range(256)) * 4
    assert header(headers, "content-type") == ["application/octet-stream"]


# ------------------------------------------------------------------------ a browser

PAGE = r'''
import json

HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Squall page</title></head>
<body>
<h1 id=t>Hello from Squall</h1>
<p id=data>waiting</p>
<script>
document.getElementById('t').textContent += ' + js';
document.cookie = 'visited=yes; path=/';
fetch('data?from=browser').then(r => r.json()).then(d => {
  document.getElementById('data').textContent = 'data: ' + d.query + ' ' + d.cookies.join(';');
}).catch(e => { document.getElementById('data').textContent = 'error: ' + e; });
</script>
</body></html>
"""


def handler(event, context):
    if event["rawPath"] == "/data":
        return {"statusCode": 200, "headers": {"content-type": "application/json"},
                "body": json.dumps({"query": event.get("rawQueryString", ""), "cookies": event.get("cookies", [])})}
    return {"statusCode": 200, "headers": {"content-type": "text/html; charset=utf-8"}, "body": HTML}
'''


def test_a_browser_renders_the_page_a_function_url_returns_and_runs_its_script(lam):
    chromium = shutil.which("chromium")
    require(chromium is not None, "chromium is not installed (Debian package: chromium)")
    require(importlib.util.find_spec("playwright") is not None, "playwright is not installed (pip install playwright)")
    from playwright.sync_api import expect, sync_playwright

    name = create_function(lam, PAGE, Timeout=10, MemorySize=256)
    url = _public_url(lam, name)
    assert urlsplit(url).hostname.endswith(".lambda-url.us-east-1.localhost")
    with sync_playwright() as playwright:
        # Chromium will not start its own sandbox as root (CI runs as root).
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        browser = playwright.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page()
            response = page.goto(url)  # Chromium resolves *.localhost to loopback itself
            assert response is not None and response.status == 200
            assert response.headers["content-type"] == "text/html; charset=utf-8"
            assert page.title() == "Squall page"
            expect(page.locator("#t")).to_have_text("Hello from Squall + js")
            expect(page.locator("#data")).to_have_text("data: from=browser visited=yes")
            assert page.evaluate("document.cookie") == "visited=yes"
        finally:
            browser.close()
