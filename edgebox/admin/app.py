"""The branch admin web page: aiohttp + jinja2, server-rendered, HTTPS only, safe on a hostile LAN.

Theory of operation
-------------------
`AdminApp(backend, records, setup_codes, config).web_app()` builds the aiohttp application; `serve()`
runs it on a socket from systemd (`LISTEN_FDS`, fd named `admin`) or on `[admin] listen:port`,
always with the box's own certificate (`tls.py`).

Every request passes three layers, in this order (`_guard` middleware):

1. *Set-up first.* Until an admin password exists, every page redirects to `/setup`, which needs
   the one-time set-up code (printed by `edgebox box admin setup-code` or imported from the boot
   partition) and the new password (argon2id, `records.py`). After that `/setup` is closed.
2. *Authentication.* Every page except `/login`, `/setup`, `/static/` and the web phone (`/phone`,
   `/phone/`) needs an authenticated session (`security.SessionTable`): cookie
   `__Host-edgebox-admin`, Secure, HttpOnly, SameSite=Strict, idle and absolute timeouts on the
   injected clock. Background polling (header `X-Edgebox-Poll`) does not extend the idle timer.
3. *CSRF.* Every POST needs the session's CSRF token (hidden form field `csrf`) and an `Origin`
   (or `Referer`) equal to the page's own origin; a failure is a 403 and an audit entry.

Logins go through `security.LoginThrottle` (per-source lock-out, global budget); every admin
action -- set-up, login, failed login, lock-out, logout, pairing code made, rename, revoke,
document added or removed, settings written, CSV export, refused forgery -- is one entry in the
audit table of the encrypted store. Every response carries the strict CSP and the other security
headers (`security.SECURITY_HEADERS`); templates contain no inline script or style, the only
script is `/static/app.js` (live status refresh, pairing countdown, upload progress), and the
pages work without it.

The pairing code's secret exists only in the invite kept in memory for the page that shows it,
in the QR image rendered on the box (segno) and in the same payload as text under it (for a phone
without a camera: paste it into the web phone); it is dropped once the phone paired or the code
expired, and no log line or audit entry carries it.
"""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
import segno
from aiohttp import web

from edgebox import phone_web
from edgebox.admin import charts
from edgebox.admin.backend import (
    AdminBackend,
    AdminError,
    DocumentProgress,
    DocumentView,
    InvalidInput,
    InviteStatus,
    LogQuery,
    NotFound,
    SettingsInvalid,
    StatusSnapshot,
)
from edgebox.admin.records import AdminRecords, SetupCodes, check_new_password
from edgebox.admin.security import (
    COOKIE_NAME,
    SECURITY_HEADERS,
    LoginThrottle,
    Session,
    SessionPolicy,
    SessionTable,
    ThrottlePolicy,
)
from edgebox.log import get_logger
from edgebox.session.invite import DEFAULT_TTL_SECONDS

log = get_logger("edgebox.admin")

HERE = Path(__file__).parent
STATIC_FILES = {"app.css": "text/css", "app.js": "text/javascript", "favicon.svg": "image/svg+xml"}
PUBLIC_PREFIXES = ("/static/", "/phone/")
PUBLIC_PATHS = frozenset({"/phone"})  # redirects to /phone/ (phone_web.routes), never to the login
MAX_UPLOAD_BYTES = 12 * 1024 * 1024
_SESSION_KEY = web.RequestKey("edgebox_admin_session", Session)


@dataclass(frozen=True)
class AdminConfig:
    invite_ttl_s: int = DEFAULT_TTL_SECONDS
    session: SessionPolicy = field(default_factory=SessionPolicy)
    throttle: ThrottlePolicy = field(default_factory=ThrottlePolicy)
    live_refresh_s: float = 5.0


@dataclass
class _Job:
    job_id: int
    filename: str
    progress: DocumentProgress
    result: DocumentView | None = None
    error: str | None = None
    task: asyncio.Task[None] | None = None


@dataclass
class _ShownInvite:
    payload: str
    expires_at: float


def _fmt_time(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


def template_environment() -> jinja2.Environment:
    """The pages' jinja2 environment (autoescaped, strict), with the app's filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = _fmt_time
    env.filters["bytes"] = _fmt_bytes
    return env


# The certificate tile (the renewal loop's state, edgebox/box/renewal.py) in the operator's words.
CERT_LABELS = {
    "valid": ("valid", "good"),
    "renewing": ("renewal due, renewing", "good"),
    "failed": ("renewal failing", "bad"),
    "expiring": ("expiring soon", "bad"),
    "expired": ("expired", "bad"),
    "missing": ("missing", "bad"),
}
_CODE = re.compile(r"[a-z0-9_]{1,64}")


def _fmt_left(seconds: float) -> str:
    """A duration in days/hours/minutes ("15 h 59 min", "2 days 3 h", "45 min")."""
    s = int(abs(seconds))
    days, hours, minutes = s // 86_400, s % 86_400 // 3600, s % 3600 // 60
    if days >= 2:
        text = f"{days} days {hours} h"
    elif s >= 3600:
        text = f"{days * 24 + hours} h {minutes} min"
    else:
        text = f"{minutes} min"
    return f"{text} left" if seconds > 0 else f"expired {text} ago"


def certificate_view(snapshot: StatusSnapshot, now: float) -> dict[str, Any] | None:
    """What the status page shows about the box's gateway certificate: the renewal state
    (valid / renewing / failed / expiring / expired / missing), the time left in hours and minutes,
    the next renewal and the last error *code* (never a message). None: no certificate at all."""
    st = dict(snapshot.certificate_state or {})
    cert = snapshot.certificate
    if cert is None and st.get("state") in (None, "missing"):
        return None
    left = cert.not_after - now if cert is not None else None
    state = str(st.get("state") or ("expired" if left is not None and left <= 0 else "valid"))
    failures = int(st.get("failures") or 0)
    if state == "renewal_due":
        state = "renewing"
    if failures and state in ("valid", "renewing"):
        state = "failed"
    label, tone = CERT_LABELS.get(state, (state, "bad"))
    error = str(st.get("last_error") or "")
    return {
        "state": state,
        "label": label,
        "tone": tone,
        "left": _fmt_left(left) if left is not None else "",
        "not_after": cert.not_after if cert is not None else None,
        "next_renewal": str(st.get("next_renewal") or ""),
        "failures": failures,
        "last_error": error if _CODE.fullmatch(error) else ("error" if error else ""),
    }


def _fmt_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _csv_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text  # no formula injection


class AdminApp:
    def __init__(
        self,
        backend: AdminBackend,
        records: AdminRecords,
        setup_codes: SetupCodes,
        config: AdminConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.backend = backend
        self.records = records
        self.setup_codes = setup_codes
        self.config = config or AdminConfig()
        self.clock = clock
        self.sessions = SessionTable(self.config.session)
        self.throttle = LoginThrottle(self.config.throttle)
        self._invites: dict[int, _ShownInvite] = {}
        self._jobs: dict[int, _Job] = {}
        self._job_ids = itertools.count(1)
        self._templates = template_environment()

    # -- application -------------------------------------------------------------------------------

    def web_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard], client_max_size=MAX_UPLOAD_BYTES)
        app.on_response_prepare.append(self._headers)
        app.on_shutdown.append(self._cancel_jobs)
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/setup", self.setup_page)
        r.add_post("/setup", self.setup_submit)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login_submit)
        r.add_post("/logout", self.logout)
        r.add_get("/status", self.status_page)
        r.add_get("/status/live", self.status_live)
        r.add_get("/pair", self.pair_page)
        r.add_post("/pair", self.pair_create)
        r.add_get("/pair/{invite_id:\\d+}", self.pair_show)
        r.add_get("/pair/{invite_id:\\d+}/state", self.pair_state)
        r.add_get("/phones", self.phones_page)
        r.add_post("/phones/{phone_id}/rename", self.phone_rename)
        r.add_post("/phones/{phone_id}/revoke", self.phone_revoke)
        r.add_get("/documents", self.documents_page)
        r.add_post("/documents", self.document_upload)
        r.add_get("/documents/jobs/{job_id:\\d+}", self.document_job)
        r.add_post("/documents/{doc_id:\\d+}/delete", self.document_delete)
        r.add_get("/audit", self.audit_page)
        r.add_get("/audit.csv", self.audit_csv)
        r.add_get("/settings", self.settings_page)
        r.add_post("/settings", self.settings_submit)
        r.add_get("/static/{name}", self.static)
        app.add_routes(phone_web.routes())  # the web phone bundle at /phone/ (issue 14)
        return app

    async def _headers(self, request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith(phone_web.PREFIX):
            # The phone page sets its own CSP and Permissions-Policy (it needs Bluetooth, the
            # camera and a WebSocket); the other security headers apply to it unchanged.
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return
        for name, value in SECURITY_HEADERS.items():
            response.headers[name] = value
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"

    async def _cancel_jobs(self, _app: web.Application) -> None:
        tasks = [j.task for j in self._jobs.values() if j.task is not None and not j.task.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the guard: set-up, authentication, CSRF ----------------------------------------------------------

    @staticmethod
    def _source(request: web.Request) -> str:
        return request.remote or "unknown"

    def _origin_ok(self, request: web.Request) -> bool:
        own = f"{request.scheme}://{request.host}"
        origin = request.headers.get("Origin")
        if origin is not None:
            return origin == own
        referer = request.headers.get("Referer")
        if referer:
            parts = urlsplit(referer)
            return f"{parts.scheme}://{parts.netloc}" == own
        return False  # a browser always sends Origin on a POST; anything else is not a form

    @web.middleware
    async def _guard(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if path.startswith(PUBLIC_PREFIXES) or path in PUBLIC_PATHS:
            return await handler(request)
        now = self.clock()
        has_password = await asyncio.to_thread(self.records.has_password)
        token = request.cookies.get(COOKIE_NAME)
        poll = request.headers.get("X-Edgebox-Poll") == "1"
        session = self.sessions.lookup(token, now, touch=not poll)
        if path in ("/setup", "/login"):
            if not has_password and path == "/login":
                raise web.HTTPSeeOther("/setup")
            if has_password and path == "/setup" and not self.setup_codes.pending():
                raise web.HTTPSeeOther("/login")
        elif not has_password:
            raise web.HTTPSeeOther("/setup")
        elif session is None or not session.authenticated:
            if request.method != "GET" or poll:
                raise web.HTTPForbidden(text="sign in first")
            query = "?expired=1" if token else ""
            raise web.HTTPSeeOther(f"/login{query}")
        if request.method == "POST":
            await self._check_csrf(request, session)
        if session is not None:
            request[_SESSION_KEY] = session
        return await handler(request)

    async def _check_csrf(self, request: web.Request, session: Session | None) -> None:
        form = await request.post()
        presented = form.get("csrf")
        ok_token = session is not None and session.check_csrf(
            presented if isinstance(presented, str) else None
        )
        if not (ok_token and self._origin_ok(request)):
            reason = "origin" if ok_token else "token"
            log.warning("admin_csrf_refused", path=request.path, source=self._source(request), reason=reason)
            await asyncio.to_thread(
                self.records.audit,
                "forged_request_refused",
                source=self._source(request),
                outcome="refused",
                target=request.path[:100],
                detail=reason,
            )
            raise web.HTTPForbidden(text="this form was not sent from the admin page (CSRF check failed)")

    def _session(self, request: web.Request) -> Session | None:
        return request.get(_SESSION_KEY)

    # -- rendering --------------------------------------------------------------------------------------

    def _render(self, request: web.Request, name: str, *, status: int = 200, **ctx: Any) -> web.Response:
        session = self._session(request)
        ctx.setdefault("error", "")
        ctx.setdefault("notice", "")
        html = self._templates.get_template(name).render(
            csrf=session.csrf if session else "",
            signed_in=bool(session and session.authenticated),
            path=request.path,
            **ctx,
        )
        return web.Response(text=html, content_type="text/html", status=status)

    def _anonymous(self, request: web.Request) -> tuple[Session, str | None]:
        """The caller's session, or a new anonymous one (its cookie must be set on the response)."""
        session = self._session(request)
        if session is not None:
            return session, None
        token, session = self.sessions.create(self.clock(), authenticated=False, source=self._source(request))
        request[_SESSION_KEY] = session
        return session, token

    @staticmethod
    def _set_cookie(response: web.StreamResponse, token: str) -> None:
        response.set_cookie(COOKIE_NAME, token, secure=True, httponly=True, samesite="Strict", path="/")

    async def _audit(self, request: web.Request, action: str, **kw: str) -> None:
        await asyncio.to_thread(self.records.audit, action, source=self._source(request), **kw)

    # -- public pages ----------------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.Response:
        raise web.HTTPSeeOther("/status")

    async def static(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in STATIC_FILES:
            raise web.HTTPNotFound()
        body = (HERE / "static" / name).read_bytes()
        resp = web.Response(body=body, content_type=STATIC_FILES[name])
        resp.headers["Cache-Control"] = "no-cache"
        return resp

    async def setup_page(self, request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
        _session, token = self._anonymous(request)
        reset = await asyncio.to_thread(self.records.has_password)
        resp = self._render(
            request,
            "setup.html",
            status=status,
            error=error,
            reset=reset,
            code_pending=self.setup_codes.pending(),
        )
        if token:
            self._set_cookie(resp, token)
        return resp

    async def setup_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        source = self._source(request)
        now = self.clock()
        verdict = self.throttle.check(source, now)
        if not verdict.allowed:
            await self._audit(request, "setup_locked", outcome="refused", detail=verdict.reason)
            return await self.setup_page(request, error=self._wait_message(verdict.retry_after_s), status=429)
        code, password, confirm = (str(form.get(k, "")) for k in ("code", "password", "confirm"))
        try:
            check_new_password(password, confirm)
        except InvalidInput as exc:
            return await self.setup_page(request, error=str(exc), status=400)
        if not self.setup_codes.consume(code):
            locked = self.throttle.failed(source, now)
            await self._audit(request, "setup_failed", outcome="refused", detail="wrong or expired code")
            msg = "That set-up code is wrong or has expired."
            if locked:
                await self._audit(request, "setup_locked", outcome="refused", detail="too many failures")
                msg = self._wait_message(self.config.throttle.lockout_s)
            return await self.setup_page(request, error=msg, status=403)
        self.throttle.succeeded(source)
        reset = await asyncio.to_thread(self.records.has_password)
        await asyncio.to_thread(self.records.set_password, password)
        self.sessions.end_all()
        await self._audit(request, "password_reset" if reset else "setup", detail="admin password set")
        log.info("admin_password_set", source=source, reset=reset)
        return self._start_session(request, "/status")

    def _start_session(self, request: web.Request, location: str) -> web.Response:
        self.sessions.end(request.cookies.get(COOKIE_NAME))
        token, _ = self.sessions.create(self.clock(), authenticated=True, source=self._source(request))
        resp = web.HTTPSeeOther(location)
        self._set_cookie(resp, token)
        raise resp

    @staticmethod
    def _wait_message(seconds: float) -> str:
        minutes = max(1, int(seconds // 60 + (1 if seconds % 60 else 0)))
        return f"Too many failed attempts. Try again in {minutes} minute{'s' if minutes != 1 else ''}."

    async def login_page(self, request: web.Request, *, error: str = "", status: int = 200) -> web.Response:
        _session, token = self._anonymous(request)
        notice = ""
        if request.query.get("expired") == "1":
            notice = "Your session has ended. Please sign in again."
        elif request.query.get("bye") == "1":
            notice = "Signed out."
        resp = self._render(request, "login.html", status=status, error=error, notice=notice)
        if token:
            self._set_cookie(resp, token)
        return resp

    async def login_submit(self, request: web.Request) -> web.Response:
        form = await request.post()
        source = self._source(request)
        now = self.clock()
        verdict = self.throttle.check(source, now)
        if not verdict.allowed:
            await self._audit(request, "login_refused", outcome="locked", detail=verdict.reason)
            return await self.login_page(request, error=self._wait_message(verdict.retry_after_s), status=429)
        password = str(form.get("password", ""))
        if not await asyncio.to_thread(self.records.verify_password, password):
            locked = self.throttle.failed(source, now)
            await self._audit(request, "login_failed", outcome="refused")
            if locked:
                await self._audit(request, "login_locked", outcome="locked", detail="too many failures")
                log.warning("admin_login_locked", source=source)
                return await self.login_page(
                    request, error=self._wait_message(self.config.throttle.lockout_s), status=429
                )
            return await self.login_page(request, error="Wrong password.", status=403)
        self.throttle.succeeded(source)
        await self._audit(request, "login")
        return self._start_session(request, "/status")

    async def logout(self, request: web.Request) -> web.Response:
        self.sessions.end(request.cookies.get(COOKIE_NAME))
        await self._audit(request, "logout")
        resp = web.HTTPSeeOther("/login?bye=1")
        resp.del_cookie(COOKIE_NAME, path="/", secure=True, samesite="Strict")
        raise resp

    # -- status -------------------------------------------------------------------------------------

    async def _status_context(self) -> dict[str, Any]:
        now = self.clock()
        snapshot = await self.backend.status()
        act = await self.backend.activity(now)
        chart_args = {"bucket_start": act.bucket_start, "bucket_s": act.bucket_s}
        return {
            "s": snapshot,
            "now": now,
            "cert": certificate_view(snapshot, now),
            "totals": {
                "requests": sum(act.requests),
                "refusals": sum(act.refusals),
                "hits": sum(act.cache_hits),
            },
            "charts": [
                (
                    "Requests",
                    charts.bar_chart(act.requests, title="Requests per hour", colour="#2f6fb3", **chart_args),
                ),
                (
                    "Refusals",
                    charts.bar_chart(act.refusals, title="Refusals per hour", colour="#b33a2f", **chart_args),
                ),
                (
                    "Cache hits",
                    charts.bar_chart(
                        act.cache_hits, title="Cache hits per hour", colour="#2f8f4e", **chart_args
                    ),
                ),
            ],
        }

    async def status_page(self, request: web.Request) -> web.Response:
        ctx = await self._status_context()
        return self._render(request, "status.html", refresh_s=self.config.live_refresh_s, **ctx)

    async def status_live(self, request: web.Request) -> web.Response:
        ctx = await self._status_context()
        return self._render(request, "status_live.html", **ctx)

    # -- pairing ------------------------------------------------------------------------------------------

    def _forget_stale_invites(self, now: float) -> None:
        for iid, inv in list(self._invites.items()):
            if inv.expires_at <= now:
                del self._invites[iid]

    async def pair_page(self, request: web.Request) -> web.Response:
        return self._render(request, "pair.html", invite=None, ttl_min=self.config.invite_ttl_s // 60)

    async def pair_create(self, request: web.Request) -> web.Response:
        self._forget_stale_invites(self.clock())
        invite = await self.backend.create_invite(self.config.invite_ttl_s)
        self._invites[invite.invite_id] = _ShownInvite(invite.payload, invite.expires_at)
        await self._audit(request, "pairing_code_created", target=f"invite {invite.invite_id}")
        raise web.HTTPSeeOther(f"/pair/{invite.invite_id}")

    async def pair_show(self, request: web.Request) -> web.Response:
        invite_id = int(request.match_info["invite_id"])
        state = await self.backend.invite_state(invite_id)
        shown = self._invites.get(invite_id)
        qr = payload = None
        if state.status is InviteStatus.pending and shown is not None:
            payload = shown.payload
            qr = segno.make(payload, error="m").svg_data_uri(scale=6, border=4)
        else:
            self._invites.pop(invite_id, None)
        return self._render(
            request,
            "pair.html",
            invite={"id": invite_id, "state": state, "qr": qr, "payload": payload, "now": self.clock()},
            ttl_min=self.config.invite_ttl_s // 60,
        )

    async def pair_state(self, request: web.Request) -> web.Response:
        invite_id = int(request.match_info["invite_id"])
        state = await self.backend.invite_state(invite_id)
        if state.status is not InviteStatus.pending:
            self._invites.pop(invite_id, None)
        return web.json_response(
            {
                "status": state.status.value,
                "expires_at": state.expires_at,
                "now": self.clock(),
                "phone_id": state.phone_id,
                "phone_name": state.phone_name,
            }
        )

    # -- phones --------------------------------------------------------------------------------------------

    async def phones_page(
        self, request: web.Request, *, error: str = "", notice: str = "", status: int = 200
    ) -> web.Response:
        phones = await self.backend.phones()
        return self._render(
            request,
            "phones.html",
            status=status,
            phones=phones,
            error=error,
            notice=notice or request.query.get("notice", ""),
        )

    async def phone_rename(self, request: web.Request) -> web.Response:
        phone_id = request.match_info["phone_id"]
        form = await request.post()
        name = str(form.get("name", ""))
        try:
            await self.backend.rename_phone(phone_id, name)
        except AdminError as exc:
            await self._audit(request, "phone_renamed", target=phone_id, outcome="refused", detail=exc.code)
            return await self.phones_page(
                request, error=str(exc), status=400 if isinstance(exc, InvalidInput) else 404
            )
        await self._audit(request, "phone_renamed", target=phone_id)
        raise web.HTTPSeeOther("/phones?" + urlencode({"notice": "Phone renamed."}))

    async def phone_revoke(self, request: web.Request) -> web.Response:
        phone_id = request.match_info["phone_id"]
        try:
            dropped = await self.backend.revoke_phone(phone_id)
        except NotFound as exc:
            return await self.phones_page(request, error=str(exc), status=404)
        await self._audit(
            request, "phone_revoked", target=phone_id, detail=f"{dropped} live session(s) dropped"
        )
        msg = f"Phone revoked; {dropped} live session{'s' if dropped != 1 else ''} dropped."
        raise web.HTTPSeeOther("/phones?" + urlencode({"notice": msg}))

    # -- documents ------------------------------------------------------------------------------------------

    async def documents_page(
        self, request: web.Request, *, error: str = "", status: int = 200
    ) -> web.Response:
        docs = await self.backend.documents()
        jobs = [j for j in self._jobs.values() if j.result is None and j.error is None]
        return self._render(
            request,
            "documents.html",
            status=status,
            documents=docs,
            jobs=jobs,
            error=error,
            notice=request.query.get("notice", ""),
        )

    async def document_upload(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        upload = form.get("file")
        wants_json = "application/json" in request.headers.get("Accept", "")
        if not isinstance(upload, web.FileField):
            if wants_json:
                return web.json_response({"error": "choose a file to upload"}, status=400)
            return await self.documents_page(request, error="Choose a file to upload.", status=400)
        data = upload.file.read()
        job = _Job(next(self._job_ids), upload.filename, DocumentProgress("queued"))
        self._jobs[job.job_id] = job

        def progress(p: DocumentProgress) -> None:
            job.progress = p

        async def run() -> None:
            try:
                doc = await self.backend.add_document(upload.filename, upload.content_type, data, progress)
            except AdminError as exc:
                job.error = str(exc)
                job.progress = DocumentProgress("failed", message=str(exc))
                await self._audit(
                    request,
                    "document_added",
                    target=upload.filename[:100],
                    outcome="refused",
                    detail=exc.code,
                )
                return
            except Exception as exc:
                job.error = "the document could not be processed"
                job.progress = DocumentProgress("failed", message=job.error)
                log.error("admin_document_failed", job=job.job_id, error=type(exc).__name__)
                await self._audit(
                    request,
                    "document_added",
                    target=upload.filename[:100],
                    outcome="error",
                    detail=type(exc).__name__,
                )
                return
            job.result = doc
            await self._audit(
                request,
                "document_added",
                target=f"doc {doc.doc_id}",
                detail=f"{upload.filename[:100]}, {doc.chunks} chunks",
            )

        job.task = asyncio.create_task(run(), name=f"admin-document-{job.job_id}")
        if wants_json:
            return web.json_response(
                {"job": job.job_id, "state": f"/documents/jobs/{job.job_id}"}, status=202
            )
        await asyncio.shield(job.task)
        if job.error:
            return await self.documents_page(request, error=job.error, status=400)
        raise web.HTTPSeeOther("/documents?" + urlencode({"notice": f"Added {upload.filename}."}))

    async def document_job(self, request: web.Request) -> web.Response:
        job = self._jobs.get(int(request.match_info["job_id"]))
        if job is None:
            raise web.HTTPNotFound()
        p = job.progress
        return web.json_response(
            {
                "filename": job.filename,
                "stage": p.stage,
                "done": p.done,
                "total": p.total,
                "error": job.error,
                "document": None
                if job.result is None
                else {"id": job.result.doc_id, "chunks": job.result.chunks},
            }
        )

    async def document_delete(self, request: web.Request) -> web.Response:
        doc_id = int(request.match_info["doc_id"])
        if not await self.backend.remove_document(doc_id):
            return await self.documents_page(request, error="No such document.", status=404)
        await self._audit(request, "document_removed", target=f"doc {doc_id}")
        raise web.HTTPSeeOther("/documents?" + urlencode({"notice": "Document deleted."}))

    # -- audit ----------------------------------------------------------------------------------------------

    @staticmethod
    def _log_query(q: Mapping[str, str], limit: int) -> LogQuery:
        def clean(name: str) -> str | None:
            v = q.get(name, "").strip()
            return v[:128] or None

        return LogQuery(
            phone_id=clean("phone"), decision=clean("decision"), trace_id=clean("trace"), limit=limit
        )

    async def audit_page(self, request: web.Request) -> web.Response:
        query = self._log_query(request.query, 200)
        rows = await self.backend.prompt_log(query)
        phones = await self.backend.phones()
        actions = await asyncio.to_thread(self.records.audit_entries, limit=100)
        csv_query = urlencode(
            {
                k: v
                for k, v in (
                    ("phone", query.phone_id),
                    ("decision", query.decision),
                    ("trace", query.trace_id),
                )
                if v
            }
        )
        return self._render(
            request,
            "audit.html",
            rows=rows,
            query=query,
            phones=phones,
            actions=actions,
            decisions=["allow", "flag", "block", "cached", "local", "error"],
            csv_query=csv_query,
        )

    async def audit_csv(self, request: web.Request) -> web.Response:
        query = self._log_query(request.query, 100_000)
        rows = await self.backend.prompt_log(query)
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["time_utc", "trace_id", "phone_id", "decision", "model", "timings_ms"])
        for r in rows:
            timings = ";".join(f"{k}={v:g}" for k, v in sorted(r.timings_ms.items()))
            w.writerow(
                [
                    _csv_cell(c)
                    for c in (_fmt_time(r.created_at), r.trace_id, r.phone_id, r.decision, r.model, timings)
                ]
            )
        filters = ", ".join(
            f"{k}={v}"
            for k, v in (("phone", query.phone_id), ("decision", query.decision), ("trace", query.trace_id))
            if v
        )
        await self._audit(
            request, "audit_exported", detail=f"{len(rows)} rows{'; ' + filters if filters else ''}"[:500]
        )
        return web.Response(
            text=buf.getvalue(),
            content_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="edgebox-audit.csv"'},
        )

    # -- settings -----------------------------------------------------------------------------------------

    async def settings_page(
        self,
        request: web.Request,
        *,
        values: Mapping[str, Any] | None = None,
        problems: Mapping[str, str] | None = None,
        status: int = 200,
    ) -> web.Response:
        current = values if values is not None else await self.backend.settings()
        return self._render(
            request,
            "settings.html",
            status=status,
            fields=self.backend.setting_fields(),
            values=current,
            problems=problems or {},
            notice=request.query.get("notice", ""),
        )

    async def settings_submit(self, request: web.Request) -> web.Response:
        from edgebox.admin.settings import validate

        form = await request.post()
        submitted = {k: str(v) for k, v in form.items() if isinstance(v, str)}
        fields = self.backend.setting_fields()
        try:
            values = validate(fields, submitted)
            before = await self.backend.settings()
            await self.backend.write_settings(values)
        except SettingsInvalid as exc:
            await self._audit(
                request, "settings_changed", outcome="refused", detail=", ".join(sorted(exc.problems))[:500]
            )
            return await self.settings_page(request, values=submitted, problems=exc.problems, status=400)
        changed = sorted(k for k, v in values.items() if before.get(k) != v)
        await self._audit(request, "settings_changed", target=", ".join(changed)[:200] or "(no change)")
        raise web.HTTPSeeOther("/settings?" + urlencode({"notice": "Settings saved."}))
