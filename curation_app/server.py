"""The curation server: FastAPI with the image route, the Gradio page mounted at `/`, uvicorn.

Login rule: the app runs without login only when it listens on `127.0.0.1`, `::1` or
`localhost`, and no users file is given. Any other address, including other 127.x.y.z loopback
addresses (which port forwarding and containers often expose), needs `--users`; without it the
server refuses to start. With login on, nothing but the login form and its static assets is
served to a browser without a session: Gradio checks its own routes, and a middleware in front of
everything (the image route, Gradio's file routes, any route a later Gradio adds) checks again.
Repeated failed logins pause that name and that address before any password is hashed, and only a
few passwords are hashed at once (`curation_app.login_guard`).
"""
from __future__ import annotations

import getpass
import logging
import math
import re
import socket
from contextvars import ContextVar
from pathlib import Path

import anyio

from pair_manifest.errors import UserError

from curation_app.login_guard import (BUSY_ANSWER, FIRST_PAUSE, FREE_FAILURES, LONGEST_PAUSE, SLOW_ANSWER,
                                     CheckSlots, LoginThrottle)
from curation_app.service import Curation
from curation_app.users import UserBook

log = logging.getLogger("curation_app")

OPEN_HOSTS = ("127.0.0.1", "::1", "localhost")
# What the login form itself loads (checked with a real browser; see tests/curation_app).
PUBLIC_EXACT = frozenset({"/", "/login", "/login/", "/favicon.ico", "/theme.css", "/manifest.json", "/robots.txt"})
PUBLIC_PREFIXES = ("/assets/", "/static/", "/svelte/")


AUTH_MESSAGE = (f"Sign in with the name and password from the users file. After {FREE_FAILURES} failed attempts "
                f"for one name or from one address, sign-in pauses ({FIRST_PAUSE:.0f} s, doubling with each further "
                f"failure, at most {LONGEST_PAUSE / 60:.0f} minutes).")
CLIENT_ADDRESS: ContextVar[str] = ContextVar("client_address", default="unknown")


async def paused_answer(wait: float) -> dict:
    """The refusal of an attempt during a pause, sent once the pause is over (SLOW_ANSWER at most)."""
    await anyio.sleep(min(wait, SLOW_ANSWER))
    seconds = math.ceil(max(0.0, wait - SLOW_ANSWER))
    when = f"try again in {seconds} s" if seconds else "try again now"
    return {"detail": f"Too many failed sign-ins for this name or from this address: sign-in was paused; {when}.",
            "headers": {"Retry-After": str(seconds)}}


def login_required(host: str, users_file: str | Path | None) -> bool:
    return users_file is not None or host not in OPEN_HOSTS


def local_annotator() -> str:
    """Who decides on a loopback server without login: the local account name."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "local"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:64] or "local"


def _gradio_app(app):
    from starlette.routing import Mount

    for route in app.routes:
        if isinstance(route, Mount) and hasattr(route.app, "tokens"):
            return route.app
    raise RuntimeError("the Gradio app is not mounted")


def create_app(curation: Curation, *, users: UserBook | None, local_user: str | None, users_file: Path | None = None):
    """The ASGI app. `users` set: login required; otherwise every request acts as `local_user`."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.responses import JSONResponse, RedirectResponse

    from curation_app.image_route import add_image_route
    from curation_app.progress import ProgressBoard
    from curation_app.ui import build_blocks, page_css, page_head

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    never_serve = [curation.project_dir] + ([users_file] if users_file else [])
    add_image_route(app, curation)
    board = ProgressBoard(curation.store, target=curation.target)
    blocks = build_blocks(curation, board, local_user=None if users else local_user)

    auth = None
    if users is not None:
        throttle, slots = LoginThrottle(), CheckSlots()

        async def auth(name: str, password: str) -> bool:
            """Paused names and addresses are refused before any hashing (login_guard); scrypt
            (~0.5 s, 128 MiB) runs off the event loop, a few at a time."""
            address = CLIENT_ADDRESS.get()
            wait = throttle.wait(name, address)
            if wait > 0:
                raise HTTPException(429, **await paused_answer(wait))
            if not slots.admit():
                log.warning("login of %s from %s refused unchecked: the server is busy checking others", name, address)
                await anyio.sleep(BUSY_ANSWER)
                raise HTTPException(503, detail="The server is busy checking other sign-ins: try again in a few "
                                                "seconds.", headers={"Retry-After": "5"})
            accepted = await anyio.to_thread.run_sync(slots.run, lambda: users.verify(name, password))
            if accepted:
                throttle.succeeded(name, address)
                log.info("login accepted for %s from %s", name, address)
                return True
            failures, pause = throttle.failed(name, address)
            if pause:
                log.warning("login refused for %s from %s (%d failures in a row): sign-in paused for %.0f s",
                            name, address, failures, pause)
            else:
                log.info("login refused for %s from %s (%d failures in a row)", name, address, failures)
            return False

    blocks.queue(default_concurrency_limit=None)
    app = gr.mount_gradio_app(
        app, blocks, path="", auth=auth, auth_message=AUTH_MESSAGE,
        head=page_head(), css=page_css(), footer_links=[], run_history=False, ssr_mode=False,
        blocked_paths=[str(p.resolve()) for p in never_serve] + [str(curation.images_root.resolve())],
    )
    if users is None:
        return app
    gradio_app = _gradio_app(app)

    def signed_in(request) -> bool:
        cookie_id = gradio_app.cookie_id
        token = request.cookies.get(f"access-token-{cookie_id}") or request.cookies.get(
            f"access-token-unsecure-{cookie_id}")
        return token is not None and token in gradio_app.tokens

    @app.middleware("http")
    async def require_login(request: Request, call_next):
        address = request.client.host if request.client else "unknown"
        CLIENT_ADDRESS.set(address)  # read by auth()
        path = request.url.path
        if request.method == "POST" and path in ("/login", "/login/"):
            wait = throttle.address_wait(address)
            if wait > 0:  # refused before the form is parsed: a flood costs a sleeping coroutine each
                answer = await paused_answer(wait)
                return JSONResponse({"detail": answer["detail"]}, status_code=429, headers=answer["headers"])
        if path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES) or signed_in(request):
            return await call_next(request)
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            return RedirectResponse("/", status_code=302)
        return JSONResponse({"detail": "Not authenticated: sign in first"}, status_code=401)

    return app


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose `proto` says
    # TCP, and accepted sockets inherit it from this one. With proto 0, every response written in two
    # pieces waited for the browser's delayed ACK: +40 ms per keypress (benchmarks/app_latency.py).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as error:
        sock.close()
        raise UserError(f"--host {host} --port {port}: cannot listen there ({error.strerror or error})") from None
    sock.listen(256)
    return sock


def serve(app, sock: socket.socket, *, banner: str) -> None:
    """Run until Ctrl-C. The socket is bound before the banner is printed, so the URL works."""
    import uvicorn

    print(banner, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=3,
                            lifespan="on")
    try:
        uvicorn.Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn shuts down gracefully, then re-raises the Ctrl-C it caught
        pass


def url_for(host: str, sock: socket.socket) -> str:
    port = sock.getsockname()[1]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host in ("::", "::1") else host)
    return f"http://{shown}:{port}/"
