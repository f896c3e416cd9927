"""The console's gate: a token when one is set (bearer, cookie, ?token= once), loopback hosts
only without one, JSON-only and same-origin controls; and off loopback a token is required."""

from __future__ import annotations

import httpx
import pytest
from starlette.routing import Mount, Route

from mesh.console import ConsoleSettings, check_bind, create_app, is_loopback
from mesh.errors import ConfigError
from mesh.settings import Settings

TOKEN = "s3cret-token"
# Nothing listens here: a request the gate lets through to a Kafka-backed route fails fast.
SETTINGS = Settings(bootstrap_servers="127.0.0.1:9", request_timeout_ms=1_000)


def _client(token: str | None, host: str = "127.0.0.1:8484") -> httpx.AsyncClient:
    app = create_app(SETTINGS, token=token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://{host}")


def _every_path() -> list[tuple[str, str]]:
    """Each route of the app with its parameters filled in (method, path)."""
    app = create_app(SETTINGS, token=TOKEN)
    paths: list[tuple[str, str]] = []
    for route in app.routes:
        if isinstance(route, Mount):
            paths.append(("GET", "/static/console.js"))
        elif isinstance(route, Route):
            path = route.path.replace("{workflow_id}", "wf-1").replace("{task_id}", "A")
            path = path.replace("{position}", "0:1")
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    paths.append((method, path))
    return paths


@pytest.mark.parametrize(("method", "path"), _every_path())
async def test_without_the_token_every_page_and_api_call_is_refused(method: str, path: str) -> None:
    async with _client(TOKEN) as client:
        answer = await client.request(method, path, json={} if method == "POST" else None)
        assert answer.status_code == 401, (path, answer.text)
        wrong = await client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        client.cookies.set("mesh_ui_token", "not-it")
        assert (await client.request(method, path)).status_code == 401


async def test_bearer_or_cookie_set_once_by_query_lets_requests_through() -> None:
    async with _client(TOKEN) as client:
        bearer = await client.get("/workflows", headers={"Authorization": f"Bearer {TOKEN}"})
        assert bearer.status_code == 200
        assert 'data-page="workflows"' in bearer.text
        once = await client.get(f"/agents?token={TOKEN}&x=1")
        assert once.status_code == 303
        assert once.headers["location"] == "/agents?x=1"  # the token leaves the address
        assert "httponly" in once.headers["set-cookie"].lower()
        client.cookies.set("mesh_ui_token", TOKEN)
        assert (await client.get("/static/console.css")).status_code == 200
        assert (await client.get("/workflows")).status_code == 200


async def test_without_a_token_only_loopback_hosts_are_served() -> None:
    async with _client(None, host="127.0.0.1:8484") as client:
        assert (await client.get("/workflows")).status_code == 200
    async with _client(None, host="evil.example:8484") as client:
        assert (await client.get("/workflows")).status_code == 403


async def test_controls_take_json_from_the_console_itself() -> None:
    async with _client(None) as client:
        form = await client.post("/api/workflows/wf-1/control", data={"action": "cancel"})
        assert form.status_code == 415
        other_site = await client.post(
            "/api/workflows/wf-1/control",
            json={"action": "cancel"},
            headers={"Origin": "http://evil.example"},
        )
        assert other_site.status_code == 403
        unknown = await client.post(
            "/api/workflows/wf-1/control",
            json={"action": "explode"},
            headers={"Origin": "http://127.0.0.1:8484"},
        )
        assert unknown.status_code == 400
        assert "unknown control" in unknown.json()["error"]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("", False),
        ("10.0.0.5", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_off_loopback_without_a_token_is_refused() -> None:
    with pytest.raises(ConfigError, match="MESH_UI_TOKEN"):
        check_bind(ConsoleSettings(host="0.0.0.0"))
    check_bind(ConsoleSettings(host="0.0.0.0", token=TOKEN))
    check_bind(ConsoleSettings())
    with pytest.raises(ConfigError):  # an empty token is no token
        check_bind(ConsoleSettings(host="0.0.0.0", token=""))
