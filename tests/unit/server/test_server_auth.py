"""Authentication on every envpack route: no credentials, wrong token, cookie writes without
XSRF, foreign origins and hosts (RELIABILITY A1, A2, A3). The server runs with
``allow_unauthenticated_access: False`` and pytest turns its unauthenticated-endpoint warning
into an error, so a handler without ``@web.authenticated`` would fail every test here."""

from __future__ import annotations

import json
import re
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import pytest

from jupyter_envpack.server.handlers import make_handlers

pytest_plugins = ["pytest_jupyter.jupyter_server"]

OP = "0123456789abcdef0123456789abcdef"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def routes() -> list[str]:
    """Concrete URLs for every pattern the extension registers."""
    return [
        re.sub(r"\(\?P<op_id>[^)]*\)", OP, pattern).lstrip("/") for pattern, _ in make_handlers()
    ]


@pytest.mark.reliability("A1")
def test_every_verb_is_authenticated_then_authorized() -> None:
    from jupyter_server.serverapp import _has_tornado_web_authenticated

    for _, handler in make_handlers():
        assert handler.auth_resource == "envpack"
        for verb in ("get", "post", "delete", "put", "patch"):
            method = getattr(handler, verb)
            if verb in vars(handler):
                assert _has_tornado_web_authenticated(method), (handler, verb)
                inner = method.__wrapped__  # @authorized sits inside @web.authenticated
                assert inner.__code__.co_qualname.startswith("authorized"), (handler, verb)


def test_every_registered_envpack_rule_is_covered(jp_serverapp: Any) -> None:
    found = set()
    for rule in jp_serverapp.web_app.default_router.rules:
        for inner in getattr(rule.target, "rules", []):
            pattern = inner.matcher.regex.pattern
            if "envpack" in pattern:
                found.add(pattern)
    assert len(found) == len(make_handlers())


@pytest.mark.reliability("A1")
@pytest.mark.parametrize("route", routes())
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("auth", ["", "token wrong-token", "Bearer nope"])
async def test_no_or_wrong_credentials_are_refused(
    jp_fetch: Any, notebook: Path, envpack_service: Any, route: str, method: str, auth: str
) -> None:
    body = (
        json.dumps({"kind": "fake", "path": "nb.ipynb"})
        if method in ("POST", "PUT", "PATCH")
        else None
    )
    r = await jp_fetch(
        *route.split("/"),
        method=method,
        body=body,
        headers={"Authorization": auth},
        params={"path": "nb.ipynb"},
        raise_error=False,
        follow_redirects=False,
    )
    assert r.code in (302, 403, 405), (route, method, r.code)
    assert r.code != 405 or method in ("PUT", "PATCH")
    assert envpack_service.manager.store.find() == []  # no side effect


def _cookies(response: Any) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for header in response.headers.get_list("Set-Cookie"):
        jar.load(header)
    return {k: v.value for k, v in jar.items()}


async def _browser_session(jp_fetch: Any, token: str) -> dict[str, str]:
    """Log in like a browser: the login cookie (``?token=``) plus the ``_xsrf`` cookie that the
    login page sets."""
    anonymous = {"Authorization": ""}
    page = await jp_fetch("login", headers=anonymous, raise_error=False, follow_redirects=False)
    login = await jp_fetch(
        "login",
        params={"token": token},
        headers=anonymous,
        raise_error=False,
        follow_redirects=False,
    )
    return {**_cookies(page), **_cookies(login)}


@pytest.mark.reliability("A2")
async def test_cookie_writes_need_xsrf(
    jp_fetch: Any, jp_serverapp: Any, notebook: Path, envpack_service: Any
) -> None:
    # Given a browser session logged in with a cookie
    cookies = await _browser_session(jp_fetch, jp_serverapp.identity_provider.token)
    login = [k for k in cookies if k.startswith("username-")]
    assert login and "_xsrf" in cookies, cookies
    cookie_header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    body = json.dumps({"kind": "fake", "path": "nb.ipynb"})
    base = {"Authorization": "", "Cookie": cookie_header}
    # reads work with the cookie alone
    r = await jp_fetch("envpack", "status", headers=dict(base), raise_error=False)
    assert r.code == 200
    # When a write comes without the XSRF header, or with a wrong one → 403, nothing created
    for extra in ({}, {"X-XSRFToken": "forged"}):
        r = await jp_fetch(
            "envpack",
            "operations",
            method="POST",
            body=body,
            headers={**base, **extra},
            raise_error=False,
        )
        assert r.code == 403, extra
    assert envpack_service.manager.store.find() == []
    # With the header copied from the _xsrf cookie → accepted
    r = await jp_fetch(
        "envpack",
        "operations",
        method="POST",
        body=body,
        headers={**base, "X-XSRFToken": cookies["_xsrf"]},
        raise_error=False,
    )
    assert r.code == 202
    op_id = json.loads(r.body)["id"]
    r = await jp_fetch(
        "envpack", "operations", op_id, method="DELETE", headers=dict(base), raise_error=False
    )
    assert r.code == 403
    # token auth bypasses XSRF by design
    r = await jp_fetch(
        "envpack",
        "operations",
        method="POST",
        body=json.dumps({"kind": "fake", "path": "nb.ipynb", "options": {"tag": 1}}),
        raise_error=False,
    )
    assert r.code == 202


@pytest.mark.reliability("A3")
async def test_foreign_origin_and_host_are_refused(
    jp_fetch: Any, jp_serverapp: Any, notebook: Path, envpack_service: Any
) -> None:
    # a logged-in browser tricked by another site: cookie + (stolen-shape) XSRF but evil Origin
    cookies = await _browser_session(jp_fetch, jp_serverapp.identity_provider.token)
    session = {
        "Authorization": "",
        "X-XSRFToken": cookies["_xsrf"],
        "Cookie": "; ".join(f"{k}={v}" for k, v in cookies.items()),
    }
    body = json.dumps({"kind": "fake", "path": "nb.ipynb"})
    r = await jp_fetch(
        "envpack",
        "operations",
        method="POST",
        body=body,
        headers={**session, "Origin": "http://evil.example"},
        raise_error=False,
    )
    assert r.code == 404
    r = await jp_fetch(
        "envpack", "status", headers={**session, "Origin": "http://evil.example"}, raise_error=False
    )
    assert r.code == 404
    # DNS rebinding: a non-local Host header
    r = await jp_fetch("envpack", "status", headers={"Host": "evil.example"}, raise_error=False)
    assert r.code == 403
    assert envpack_service.manager.store.find() == []
