"""The dashboard's Starlette application: pages, JSON and CSV over the reader views.

Read-only by construction: every route is GET (HEAD), every query a SELECT with bound
parameters on the views of ``banditq db grant-reader``. With a token, every request must
carry it (``Authorization: Bearer``, or ``?token=`` once, which sets a same-site cookie).
Everything from the database is HTML-escaped, and the Content-Security-Policy allows only
this host's own scripts, styles and images: nothing loads from elsewhere.
"""

from __future__ import annotations

import csv
import hmac
import html
import io
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, text
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from app.dashboard.cache import CampaignCache
from app.report.html import error_cells, error_rows, fmt, shown, summary_rows
from app.report.plots import PLOTS, plot_names
from tasks.errors import NotFoundError

STATIC = Path(__file__).parent / "static"
COOKIE = "banditq_token"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
LIST_COLUMNS = (
    "campaign",
    "kind",
    "policy",
    "status",
    "instances",
    "succeeded",
    "failed",
    "progress",
    "trials_per_s",
    "last_activity",
)


#: Host names a dashboard bound to a loopback address answers to
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def allowed_hosts(bind: str) -> frozenset[str] | None:
    """The Host header values a dashboard bound to ``bind`` accepts: loopback names for a
    loopback bind, the address itself for a specific one, None (any, the token guards it)
    for a wildcard bind. A page on another name reaching a loopback dashboard through DNS
    rebinding is refused."""
    if bind in LOOPBACK_HOSTS:
        return LOOPBACK_HOSTS
    if bind in ("0.0.0.0", "::", ""):
        return None
    return frozenset({bind})


def host_of(header: str) -> str:
    """The host part of a Host header (``[::1]:8080`` -> ``::1``, ``a:80`` -> ``a``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class Guard(BaseHTTPMiddleware):
    """Host check, token check and security headers on every response."""

    def __init__(self, app: Any, token: str | None, hosts: frozenset[str] | None = None) -> None:
        super().__init__(app)
        self.token = token
        self.hosts = hosts

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        if self.hosts is not None and host_of(request.headers.get("host", "")) not in self.hosts:
            return PlainTextResponse(
                "421: this dashboard answers only to the address it is bound to", status_code=421
            )
        given = None
        if self.token:
            auth = request.headers.get("authorization", "")
            given = (
                auth[7:]
                if auth.lower().startswith("bearer ")
                else request.query_params.get("token") or request.cookies.get(COOKIE)
            )
            if not given or not hmac.compare_digest(given.encode(), self.token.encode()):
                return PlainTextResponse(
                    "401: this dashboard needs its token (BANDITQ_DASHBOARD_TOKEN): open it "
                    "with ?token=... or send Authorization: Bearer ...",
                    status_code=401,
                )
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-store"
        if self.token and request.query_params.get("token") == given:
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response


def _page(title: str, body: str, attrs: str = "") -> HTMLResponse:
    return HTMLResponse(
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<link rel='stylesheet' href='/static/dashboard.css'></head>"
        f"<body {attrs}><header><a href='/'>banditq dashboard</a></header>{body}"
        "<script src='/static/dashboard.js'></script></body></html>"
    )


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v


def create_app(
    engine: Engine,
    token: str | None = None,
    refresh_s: float = 2.0,
    hosts: frozenset[str] | None = None,
) -> Starlette:
    """The application over ``engine`` (a reader role is enough)."""
    cache = CampaignCache(engine, ttl_s=min(1.0, refresh_s / 2))
    refresh = html.escape(str(refresh_s))

    def campaigns(request: Request) -> list[dict[str, Any]]:
        from app.report.data import campaign_list

        return [{k: r[k] for k in LIST_COLUMNS} for r in campaign_list(engine)]

    def index(request: Request) -> Response:
        head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in LIST_COLUMNS)
        rows = []
        for r in campaigns(request):
            name = html.escape(str(r["campaign"]))
            cells = "".join(
                f'<td data-key="{c}">{html.escape(fmt(r[c]))}</td>' for c in LIST_COLUMNS[1:]
            )
            rows.append(
                f'<tr data-campaign="{name}"><td><a href="/c/{quote(str(r["campaign"]), safe="")}">'
                f"{name}</a></td>{cells}</tr>"
            )
        body = (
            "<h1>Campaigns</h1><p><a href='/api/campaigns'>JSON</a> · "
            "<a href='/campaigns.csv'>CSV</a></p>"
            f"<table id='campaigns'><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}"
            "</tbody></table>"
        )
        return _page("banditq: campaigns", body, f'data-page="index" data-refresh="{refresh}"')

    def api_campaigns(request: Request) -> Response:
        """Every campaign; ``?display=1``: as the page shows them (formatted strings)."""
        rows = campaigns(request)
        show = fmt if request.query_params.get("display") else _jsonable
        return JSONResponse([{k: show(v) for k, v in r.items()} for r in rows])

    def campaigns_csv(request: Request) -> Response:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(LIST_COLUMNS)
        for r in campaigns(request):
            w.writerow([_jsonable(r[c]) for c in LIST_COLUMNS])
        return Response(
            buf.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": "attachment; filename=campaigns.csv"},
        )

    def campaign(request: Request) -> Response:
        name = request.path_params["name"]
        entry = cache.get(name)
        q = quote(name, safe="")
        figs = "".join(
            f'<figure><img data-plot="{k}" alt="{k}" src="/c/{q}/plot/{k}.png?v='
            f'{entry.summary["trials"]}"><figcaption>'
            f"{html.escape((PLOTS[k].__doc__ or '').strip())}</figcaption></figure>"
            for k in plot_names(entry.data)
        )
        body = (
            f"<h1>{html.escape(name)}</h1><p>Downloads: <a href='/c/{q}/trials.csv'>trials CSV"
            f"</a> · <a href='/c/{q}/trials.json'>trials JSON</a> · "
            f"<a href='/api/c/{q}/summary'>summary JSON</a></p>"
            f"<table id='summary'>{summary_rows(entry.summary)}</table>{figs}"
            f"<h2>Recent failures</h2><table id='errors'>{error_rows(entry.data)}</table>"
        )
        return _page(
            f"banditq: {name}",
            body,
            f'data-page="campaign" data-campaign="{html.escape(name)}" data-refresh="{refresh}"',
        )

    def summary(request: Request) -> Response:
        """The summary; ``?display=1``: as the page shows it (formatted strings)."""
        s = cache.get(request.path_params["name"]).summary
        if request.query_params.get("display"):
            return JSONResponse({k: shown(k, v) for k, v in s.items()})
        return JSONResponse(s)

    def errors(request: Request) -> Response:
        """The recent failures table, as the page shows it (strings; the page's script
        puts them in with textContent)."""
        return JSONResponse(error_cells(cache.get(request.path_params["name"]).data))

    def plot(request: Request) -> Response:
        name, kind = request.path_params["name"], request.path_params["plot"]
        if kind not in PLOTS:
            return PlainTextResponse(f"unknown plot {kind!r}", status_code=404)
        return Response(cache.plot(name, kind), media_type="image/png")

    def _trial_rows(name: str) -> Iterator[dict[str, Any]]:
        with engine.connect() as conn:
            res = conn.execution_options(stream_results=True, yield_per=2000).execute(
                text(
                    "SELECT * FROM trial_results WHERE campaign = :c ORDER BY instance_seq, "
                    "trial_id"
                ),
                {"c": name},
            )
            for row in res:
                yield {k: _jsonable(v) for k, v in row._mapping.items()}

    def trials_csv(request: Request) -> Response:
        name = request.path_params["name"]
        cache.get(name)  # 404 for an unknown campaign before the stream starts

        def lines() -> Iterator[str]:
            buf = io.StringIO()
            w = csv.writer(buf)
            header = False
            for row in _trial_rows(name):
                if not header:
                    w.writerow(row.keys())
                    header = True
                w.writerow(
                    [json.dumps(v) if isinstance(v, dict | list) else v for v in row.values()]
                )
                if buf.tell() > 65536:
                    yield buf.getvalue()
                    buf.seek(0)
                    buf.truncate()
            yield buf.getvalue()

        return StreamingResponse(
            lines(),
            media_type="text/csv",
            headers={"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name)}.csv"},
        )

    def trials_json(request: Request) -> Response:
        name = request.path_params["name"]
        cache.get(name)

        def chunks() -> Iterator[str]:
            yield "["
            for i, row in enumerate(_trial_rows(name)):
                yield ("," if i else "") + json.dumps(row, default=str)
            yield "]"

        return StreamingResponse(chunks(), media_type="application/json")

    async def not_found(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(str(exc), status_code=404)

    get = ["GET"]
    routes = [
        Route("/", index, methods=get),
        Route("/api/campaigns", api_campaigns, methods=get),
        Route("/campaigns.csv", campaigns_csv, methods=get),
        # Campaign names may hold "/": specific routes first, the page last.
        Route("/api/c/{name:path}/summary", summary, methods=get),
        Route("/api/c/{name:path}/errors", errors, methods=get),
        Route("/c/{name:path}/plot/{plot}.png", plot, methods=get),
        Route("/c/{name:path}/trials.csv", trials_csv, methods=get),
        Route("/c/{name:path}/trials.json", trials_json, methods=get),
        Route("/c/{name:path}", campaign, methods=get),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, token=token, hosts=hosts)],
        exception_handlers={NotFoundError: not_found},
    )
