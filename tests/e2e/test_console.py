"""The web console (``/console``) in headless Chromium: sign in with an access key (every call
signed in the browser: SigV4 in JavaScript, checked by the server's botocore-based verifier),
the functions, one function's page, an invocation, its log line, its count in the chart; the
one-time link ``squall console`` prints; the console without authentication."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import boto3
import pytest

from tests.conftest import ROLE, create_function, require, start_server, unique_name

pytestmark = pytest.mark.e2e

DOCS_IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
# SQUALL_UPDATE_SCREENSHOTS=1 refreshes the docs' screenshots; otherwise they go to the test's tmp dir only
UPDATE_DOCS = os.environ.get("SQUALL_UPDATE_SCREENSHOTS") == "1"

CODE = """
import json

def handler(event, context):
    print("console-marker", json.dumps(event))
    return {"echo": event, "ok": True}
"""

POLICY = json.dumps({"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Action": ["lambda:*", "logs:*", "cloudwatch:*"], "Resource": "*"},
]})


def _chromium() -> str:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
    require(chromium is not None, "chromium is not installed (Debian package: chromium)")
    require(importlib.util.find_spec("playwright") is not None, "playwright is not installed (pip install playwright)")
    assert chromium is not None
    return chromium


@pytest.fixture(scope="module")
def squall(tmp_path_factory):
    running = start_server(tmp_path_factory.mktemp("squall-console"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def function_name(squall):
    return create_function(squall.client("lambda"), CODE, FunctionName=unique_name("console"), MemorySize=256)


@pytest.fixture(scope="module")
def user_key(squall):
    iam = squall.client("iam")
    name = unique_name("console-user")
    iam.create_user(UserName=name)
    iam.put_user_policy(UserName=name, PolicyName="console", PolicyDocument=POLICY)
    key = iam.create_access_key(UserName=name)["AccessKey"]
    return name, key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="module")
def browser():
    chromium = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium will not sandbox itself as root
        launched = playwright.chromium.launch(executable_path=chromium, args=args, headless=True)
        yield launched
        launched.close()


def run_cli(server, *args: str, env: dict[str, str] | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    full.update({"SQUALL_ENDPOINT": server.endpoint, "SQUALL_DATA_DIR": str(server.data_dir),
                 "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull, **(env or {})})
    return subprocess.run([sys.executable, "-m", "squall.cli.main", *args], env=full, capture_output=True, text=True,
                          timeout=60)


def _new_page(browser, errors: list[str]):
    context = browser.new_context(viewport={"width": 1366, "height": 768})
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(f"pageerror: {exc}"))
    page.on("console", lambda msg: errors.append(f"console: {msg.text}") if msg.type == "error" else None)
    return context, page


def _post_json(url: str, document: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(document).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# ---------------------------------------------------------------- static files
def test_static_files_are_public_but_the_link_needs_auth(squall):
    with urllib.request.urlopen(squall.endpoint + "/console/", timeout=10) as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/html; charset=utf-8"
        assert response.headers["Cache-Control"] == "no-cache"
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        html = response.read().decode()
    assert "<script>" not in html and 'src="app.js"' in html  # no inline script
    for name, content_type in (("app.js", "text/javascript"), ("sigv4.js", "text/javascript"), ("console.css", "text/css")):
        with urllib.request.urlopen(f"{squall.endpoint}/console/{name}", timeout=10) as response:
            assert response.headers["Content-Type"].startswith(content_type)
    with urllib.request.urlopen(squall.endpoint + "/console/config.json", timeout=10) as response:
        assert json.loads(response.read()) == {"region": "us-east-1", "authentication": True}
    for path in ("/console/../health", "/console/nope.js", "/console/static/app.js"):
        try:
            urllib.request.urlopen(squall.endpoint + path, timeout=10)
        except urllib.error.HTTPError as exc:
            assert exc.code in (403, 404), path
    # the link endpoint is not public
    status, _ = _post_json(squall.endpoint + "/console/link", {})
    assert status == 403


def test_guard_still_refuses_a_page_from_another_origin(squall):
    request = urllib.request.Request(squall.endpoint + "/2015-03-31/functions", headers={"Origin": "http://evil.example"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    port = squall.endpoint.rsplit(":", 1)[1]
    request = urllib.request.Request(squall.endpoint + "/console/config.json",
                                     headers={"Origin": f"http://localhost:{int(port) + 1}"})
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(request, timeout=10)


# ---------------------------------------------------------------- the browser
def test_auth_with_an_access_key_then_invoke_logs_and_metrics(squall, function_name, user_key, browser, tmp_path):
    from playwright.sync_api import expect

    _, key_id, secret = user_key
    errors: list[str] = []
    context, page = _new_page(browser, errors)
    try:
        response = page.goto(squall.endpoint + "/console/")
        assert response is not None and response.status == 200
        expect(page.locator("#sign-in")).to_be_visible()
        page.screenshot(path=str(tmp_path / "console-sign-in.png"))
        page.fill("#access-key-id", key_id)
        page.fill("#secret-access-key", secret)
        page.click("#sign-in-button")

        row = page.locator(f'tr[data-function="{function_name}"]')
        expect(row).to_be_visible(timeout=15_000)
        expect(row).to_contain_text("python3.11")
        expect(row).to_contain_text("256 MB")
        expect(row.locator(".state")).to_contain_text("Active", timeout=10_000)
        expect(page.locator("#who")).to_contain_text(key_id)
        page.screenshot(path=str(tmp_path / "console-functions.png"))
        if UPDATE_DOCS:
            page.screenshot(path=str(DOCS_IMAGES / "console-functions.png"))

        row.locator("a").click()
        expect(page.locator("#configuration")).to_contain_text("app.handler", timeout=15_000)
        expect(page.locator("#function-url")).to_contain_text("No function URL.", timeout=15_000)
        expect(page.locator("#versions")).to_contain_text("$LATEST", timeout=15_000)
        expect(page.locator("#concurrency")).to_contain_text("unreserved", timeout=15_000)

        # the JSON editor refuses what is not JSON
        page.fill("#payload", '{"n": ')
        expect(page.locator("#invoke")).to_be_disabled()
        marker = uuid.uuid4().hex
        page.fill("#payload", json.dumps({"n": 42, "marker": marker}))
        expect(page.locator("#payload-validity")).to_have_text("valid JSON")
        page.click("#invoke")
        expect(page.locator("#invoke-payload")).to_contain_text(marker, timeout=30_000)
        expect(page.locator("#invoke-payload")).to_contain_text('"ok": true')
        expect(page.locator("#invoke-status")).to_contain_text("200")
        expect(page.locator("#invoke-log")).to_contain_text("console-marker")  # the log tail (X-Amz-Log-Result)

        expect(page.locator("#live-logs")).to_contain_text(marker, timeout=20_000)  # FilterLogEvents, polled
        page.wait_for_function(
            "() => Number(document.querySelector('#chart-invocations').dataset.total || 0) >= 1", timeout=30_000)
        expect(page.locator("#chart-invocations .bar").first).to_be_attached()
        expect(page.locator("#chart-duration svg")).to_be_attached(timeout=20_000)
        page.screenshot(path=str(tmp_path / "console-function.png"), full_page=True)
        if UPDATE_DOCS:
            page.screenshot(path=str(DOCS_IMAGES / "console-function.png"), full_page=True)

        # a wrong secret: the sign-in form says so
        page.click("#sign-out")
        page.fill("#access-key-id", key_id)
        page.fill("#secret-access-key", "x" * 40)
        page.click("#sign-in-button")
        expect(page.locator("#sign-in .error")).to_contain_text("InvalidSignature", timeout=10_000)
    finally:
        context.close()
    assert not [e for e in errors if "Content Security Policy" in e or "pageerror" in e], errors


def test_auth_with_a_one_time_link(squall, function_name, user_key, browser, tmp_path):
    from playwright.sync_api import expect

    done = run_cli(squall, "console")
    assert done.returncode == 0, done.stderr
    link = done.stdout.strip().splitlines()[-1]
    assert re.fullmatch(re.escape(squall.endpoint) + r"/console/#code=[A-Za-z0-9_-]{40,}", link), link
    assert "works once" in done.stderr

    errors: list[str] = []
    context, page = _new_page(browser, errors)
    try:
        page.goto(link)
        expect(page.locator(f'tr[data-function="{function_name}"]')).to_be_visible(timeout=15_000)
        expect(page.locator("#who")).to_contain_text("user/admin")
        assert "code=" not in page.url  # taken off the address bar
        stored = json.loads(page.evaluate("sessionStorage.getItem('squall.console.credentials')"))
        assert stored["accessKeyId"].startswith("ASIA") and stored["sessionToken"]
    finally:
        context.close()

    context, page = _new_page(browser, errors)  # the same link, again: refused
    try:
        page.goto(link)
        expect(page.locator("#sign-in .error")).to_contain_text("already used", timeout=10_000)
    finally:
        context.close()
    code = link.split("#code=", 1)[1]
    status, body = _post_json(squall.endpoint + "/console/session", {"code": code})
    assert status == 403 and "already used" in body["Message"]
    status, _ = _post_json(squall.endpoint + "/console/session", {"code": "made-up"})
    assert status == 403


def test_a_link_authenticates_as_the_identity_that_made_it(squall, function_name, user_key):
    name, key_id, secret = user_key
    done = run_cli(squall, "console", env={"AWS_ACCESS_KEY_ID": key_id, "AWS_SECRET_ACCESS_KEY": secret})
    assert done.returncode == 0, done.stderr
    code = done.stdout.strip().split("#code=", 1)[1]
    status, session = _post_json(squall.endpoint + "/console/session", {"code": code})
    assert status == 200, session
    assert session["AccessKeyId"].startswith("ASIA") and session["Expiration"].endswith("Z")
    assert session["Identity"].endswith(f":user/{name}")
    client = boto3.client("lambda", endpoint_url=squall.endpoint, region_name="us-east-1",
                          aws_access_key_id=session["AccessKeyId"], aws_secret_access_key=session["SecretAccessKey"],
                          aws_session_token=session["SessionToken"])
    assert function_name in [f["FunctionName"] for f in client.list_functions()["Functions"]]
    iam = boto3.client("iam", endpoint_url=squall.endpoint, region_name="us-east-1",
                       aws_access_key_id=session["AccessKeyId"], aws_secret_access_key=session["SecretAccessKey"],
                       aws_session_token=session["SessionToken"])
    with pytest.raises(iam.exceptions.ClientError) as denied:  # the user's own policies: no IAM
        iam.list_users()
    assert denied.value.response["Error"]["Code"] == "AccessDenied"
    assert f"user/{name}" in denied.value.response["Error"]["Message"]


def test_console_without_authentication(tmp_path_factory, browser):
    from playwright.sync_api import expect

    running = start_server(tmp_path_factory.mktemp("squall-console-noauth"), "--auth", "off")
    try:
        name = create_function(running.client("lambda"), CODE, FunctionName=unique_name("open"), Role=ROLE)
        done = run_cli(running, "console")
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == running.endpoint + "/console/"
        errors: list[str] = []
        context, page = _new_page(browser, errors)
        try:
            page.goto(done.stdout.strip())
            expect(page.locator(f'tr[data-function="{name}"]')).to_be_visible(timeout=15_000)
            expect(page.locator("#who")).to_contain_text("authentication off")
        finally:
            context.close()
    finally:
        running.stop()


# ---------------------------------------------------------------- sessions (no server)
def test_keys_user_and_role_sessions_do_not_open_as_each_other():
    from squall.auth.keys import Keys

    keys = Keys(b"k" * 32)
    user = keys.user_session("alice", "console", 3600, now=1000.0)
    role = keys.session("squall-function", "fn", 3600, now=1000.0)
    assert user.access_key_id.startswith("ASIA") and user.user_name == "alice" and user.role_name == ""
    assert keys.open_user_session(user.access_key_id, user.session_token) == ("alice", "console", 4600.0,
                                                                               user.secret_access_key)
    assert keys.open_session(user.access_key_id, user.session_token) is None  # not a role's
    assert keys.open_user_session(role.access_key_id, role.session_token) is None  # not a user's
    assert keys.open_user_session(role.access_key_id, user.session_token) is None  # another key's
    payload, seal = user.session_token.split(".")
    assert keys.open_user_session(user.access_key_id, payload[:-2] + "xx." + seal) is None  # altered


def test_one_time_codes_for_auth_expire_and_work_once():
    from squall.console import OneTimeCodes

    now = [0.0]
    codes = OneTimeCodes(clock=lambda: now[0])
    principal = object()
    first, _ = codes.issue(principal)  # type: ignore[arg-type]
    assert codes.redeem(first) is principal and codes.redeem(first) is None
    second, _ = codes.issue(principal)  # type: ignore[arg-type]
    now[0] = 301.0
    assert codes.redeem(second) is None
