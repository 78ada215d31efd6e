"""``ws/notifications/`` through the project's ASGI application and the real Redis channel layer: only signed-in
users, each gets their own toasts (and nobody else's), and nothing the browser sends can break the socket."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from cryptoproject.asgi import application
from notifications.channels import in_app
from notifications.channels.base import Deadline
from notifications.consumers import CLOSE_UNAUTHENTICATED
from notifications.models import ChannelKind
from tests.notifications.factories import deliveries, destination, user

ORIGIN = (b"origin", b"http://127.0.0.1")
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


async def signed_in_socket(owner: Any) -> WebsocketCommunicator:
    client = Client()
    await sync_to_async(client.force_login)(owner)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=[ORIGIN, (b"cookie", cookie)])
    connected, _ = await comm.connect()
    assert connected
    return comm


async def test_an_anonymous_socket_is_refused() -> None:
    comm = WebsocketCommunicator(application, "/ws/notifications/", headers=[ORIGIN])
    connected, code = await comm.connect()
    assert not connected
    assert code == CLOSE_UNAUTHENTICATED


async def test_each_user_gets_their_own_toasts_and_bad_frames_are_ignored() -> None:
    lena, mo = await sync_to_async(user)("lena"), await sync_to_async(user)("mo")
    lena_socket, mo_socket = await signed_in_socket(lena), await signed_in_socket(mo)
    try:
        await lena_socket.send_to(bytes_data=b"\x00\xff")  # binary and non-JSON frames: ignored
        await lena_socket.send_to(text_data="not json")

        def fire() -> Any:
            [delivery] = deliveries(lena, destination(lena, ChannelKind.IN_APP))
            in_app.send(delivery, Deadline.after(5))
            return delivery

        delivery = await sync_to_async(fire)()
        toast = await lena_socket.receive_json_from(timeout=5)
        assert toast == {
            "toast": {"key": delivery.key, "subject": delivery.subject, "body": delivery.body, "data": delivery.payload}
        }
        assert await mo_socket.receive_nothing(timeout=1)
    finally:
        await lena_socket.disconnect()
        await mo_socket.disconnect()


def test_pages_load_the_toasts_for_signed_in_users_only(client: Client, settings: Any) -> None:
    settings.DASHBOARD_LOGIN_REQUIRED = False
    assert b"notifications/toast.js" not in client.get("/").content
    client.force_login(user("nina"))
    assert b"notifications/toast.js" in client.get("/").content


async def test_logging_out_closes_the_sessions_notifications_socket() -> None:
    """As the dashboard's sockets do: the logged-out session's toasts stop, another session of the user keeps its."""
    nina = await sync_to_async(user)("nina")
    browser, other_browser = Client(), Client()
    await sync_to_async(browser.force_login)(nina)
    await sync_to_async(other_browser.force_login)(nina)
    comms = []
    for client in (browser, other_browser):
        cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
        comm = WebsocketCommunicator(application, "/ws/notifications/", headers=[ORIGIN, (b"cookie", cookie)])
        assert (await comm.connect())[0]
        comms.append(comm)
    logged_out, elsewhere = comms
    try:
        response = await sync_to_async(browser.post)("/accounts/logout/")
        assert response.status_code == 302
        assert await logged_out.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_UNAUTHENTICATED}
        assert await elsewhere.receive_nothing(timeout=0.5)
    finally:
        for comm in comms:
            await comm.disconnect()
