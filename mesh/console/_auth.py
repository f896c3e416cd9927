"""The console's gate: a token when one is set, and no cross-site control of the mesh.

- With a token, a request is let through if it carries it as ``Authorization: Bearer <token>``
  or in the ``mesh_ui_token`` cookie; ``?token=<token>`` once sets that cookie (and redirects to
  the same address without it, so the token does not stay in the address bar or history).
  Anything else is a 401.
- Without a token (loopback only), the ``Host`` header must name a loopback address, so a web
  page cannot reach the console through a DNS name that points at 127.0.0.1.
- A request that changes something (POST) must send JSON and, when the browser says where it
  comes from (``Origin``), come from the console itself: another site's form cannot send it.
"""

from __future__ import annotations

import hmac
from urllib.parse import urlencode, urlsplit

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from mesh.console._settings import is_loopback

COOKIE = "mesh_ui_token"


class Gate:
    """ASGI middleware applying the rules in the module docstring."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.refusal(Request(scope))
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, request: Request) -> Response | None:
        """The response refusing ``request``, or None to let it through."""
        if self.token is None:
            host = request.headers.get("host", "")
            if not is_loopback(urlsplit(f"//{host}").hostname or ""):
                return PlainTextResponse("mesh console: unknown host\n", status_code=403)
        else:
            given = request.query_params.get("token")
            if given is not None and self._is_token(given):
                return self._set_cookie(request)
            if not self._carries_token(request):
                return PlainTextResponse(
                    "mesh console: this console needs its token (MESH_UI_TOKEN): open it with "
                    "?token=… once, or send 'Authorization: Bearer …'\n",
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="mesh console"'},
                )
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            kind = request.headers.get("content-type", "").split(";")[0].strip()
            origin = request.headers.get("origin")
            if kind != "application/json":
                return PlainTextResponse("mesh console: send JSON\n", status_code=415)
            if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
                return PlainTextResponse("mesh console: cross-site request\n", status_code=403)
        return None

    def _is_token(self, given: str) -> bool:
        assert self.token is not None
        return hmac.compare_digest(given.encode(), self.token.encode())

    def _carries_token(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self._is_token(value.strip()):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self._is_token(cookie)

    def _set_cookie(self, request: Request) -> Response:
        query = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = URL(str(request.url)).replace(query=urlencode(query))
        response = RedirectResponse(
            str(target.path) + (f"?{target.query}" if target.query else ""), status_code=303
        )
        assert self.token is not None
        response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict", path="/")
        return response
