"""The Twilio and Telegram stand-ins as ``make demo`` runs them (``manage.py run_standins``, a child process): the
real APIs' request layout, auth and error answers, and the messages they kept (``/_messages`` and JSON lines)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.conftest import ChildProcess, manage, subprocess_env, wait_for
from tests.notifications.receivers import free_port

pytestmark = pytest.mark.integration

SID, TOKEN, FROM, BOT = "ACstandin0000000000000000000000000", "standin-token", "+15005550006", "42:bot-token"


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url, data=body, headers=headers or {}, method="POST" if body is not None else "GET"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def standins(spawn: Callable[..., ChildProcess], tmp_path: Path) -> tuple[str, str, Path]:
    ports = free_port(), free_port()
    child = spawn(
        manage(
            "run_standins", "--twilio-port", str(ports[0]), "--telegram-port", str(ports[1]), "--dir", str(tmp_path)
        ),
        env=subprocess_env(TWILIO_ACCOUNT_SID=SID, TWILIO_AUTH_TOKEN=TOKEN, TWILIO_FROM=FROM, TELEGRAM_BOT_TOKEN=BOT),
        name="standins",
    )
    wait_for(lambda: "Telegram stand-in on" in child.output() or child.proc.poll() is not None, timeout=60)
    assert child.proc.poll() is None, child.output()
    assert f"http://127.0.0.1:{ports[0]}/_messages" in child.output()  # where make demo says messages are
    return f"http://127.0.0.1:{ports[0]}", f"http://127.0.0.1:{ports[1]}", tmp_path


def twilio_post(base: str, form: dict[str, str], sid: str = SID, token: str = TOKEN) -> tuple[int, Any]:
    auth = base64.b64encode(f"{sid}:{token}".encode()).decode()
    return call(
        f"{base}/2010-04-01/Accounts/{sid}/Messages.json",
        urlencode(form).encode(),
        {"Authorization": f"Basic {auth}", "Content-Type": "application/x-www-form-urlencoded"},
    )


def test_twilio_stand_in(standins: tuple[str, str, Path]) -> None:
    base, _, folder = standins
    status, message = twilio_post(base, {"To": "+14155550100", "From": FROM, "Body": "BTC crossed 60000"})
    assert status == 201
    assert message["sid"].startswith("SM")
    assert (message["status"], message["to"], message["body"]) == ("queued", "+14155550100", "BTC crossed 60000")
    assert twilio_post(base, {"To": "+14155550100", "From": FROM, "Body": "x"}, token="wrong")[1]["code"] == 20003
    status, error = twilio_post(base, {"To": "+15005550001", "From": FROM, "Body": "x"})
    assert (status, error["code"], error["status"]) == (400, 21211, 400)
    assert twilio_post(base, {"To": "+14155550100", "From": FROM})[1]["code"] == 21602
    assert call(f"{base}/_faults", json.dumps({"next": [429]}).encode())[0] == 200
    status, error = twilio_post(base, {"To": "+14155550100", "From": FROM, "Body": "x"})
    assert (status, error["code"]) == (429, 20429)
    kept = call(f"{base}/_messages")[1]
    assert [m["body"] for m in kept] == ["BTC crossed 60000"]
    lines = (folder / "twilio.jsonl").read_text().splitlines()
    assert [json.loads(line)["to"] for line in lines] == ["+14155550100"]


def test_telegram_stand_in(standins: tuple[str, str, Path]) -> None:
    _, base, folder = standins
    headers = {"Content-Type": "application/json"}

    def send(chat: str, text: str, token: str = BOT) -> tuple[int, Any]:
        return call(f"{base}/bot{token}/sendMessage", json.dumps({"chat_id": chat, "text": text}).encode(), headers)

    status, answer = send("424242", "BTC crossed 60000")
    assert status == 200
    assert answer["ok"] is True
    assert (answer["result"]["chat"]["id"], answer["result"]["text"]) == (424242, "BTC crossed 60000")
    assert send("424242", "x", token="1:other") == (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert send("666", "x")[0] == 403
    assert send("424242", " ")[1]["description"] == "Bad Request: message text is empty"
    call(f"{base}/_faults", json.dumps({"next": [429]}).encode())
    status, answer = send("424242", "x")
    assert (status, answer["parameters"]["retry_after"]) == (429, 3)
    assert [m["text"] for m in call(f"{base}/_messages")[1]] == ["BTC crossed 60000"]
    assert len((folder / "telegram.jsonl").read_text().splitlines()) == 1
