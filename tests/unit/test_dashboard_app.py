"""The dashboard application in-process (Starlette's test client) on the embedded database:
routes, token, read-only methods, headers, downloads equal to SQL counts."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import text
from starlette.testclient import TestClient

from app.client import Client
from app.config import Settings
from app.dashboard.server import create_app
from app.offline.tablecampaign import create_table_campaign, submit_table
from app.offline.tables import relax_table
from tests.inline import InlineScheduler


@pytest.fixture
def client(embedded_settings: Settings) -> Client:
    c = Client(settings=embedded_settings)
    tab = relax_table("high", T=80, seed=1, m=6)
    submit_table(create_table_campaign(c, "tab1", tab), tab)
    InlineScheduler(embedded_settings).run_until_idle()
    with c.engine.begin() as conn:  # the client refuses "/"; the dashboard must cope anyway
        conn.execute(text("UPDATE campaigns SET name = 'tab/1'"))
    return c


def _sql(client: Client, sql: str) -> int:
    with client.engine.connect() as conn:
        return int(conn.execute(text(sql)).scalar_one())


def test_pages_plots_and_downloads(client: Client) -> None:
    web = TestClient(create_app(client.engine))
    index = web.get("/")
    assert index.status_code == 200 and 'href="/c/tab%2F1"' in index.text
    assert index.headers["content-security-policy"].startswith("default-src 'none'")
    rows = web.get("/api/campaigns").json()
    assert rows[0]["campaign"] == "tab/1" and rows[0]["succeeded"] == 80
    page = web.get("/c/tab%2F1")
    assert page.status_code == 200 and 'data-campaign="tab/1"' in page.text
    summary = web.get("/api/c/tab%2F1/summary").json()
    assert summary["succeeded"] == _sql(
        client, "SELECT count(*) FROM trial_results WHERE status = 'succeeded'"
    )
    assert web.get("/api/c/tab%2F1/summary?display=1").json()["succeeded"] == "80"
    for kind in ("cost", "arms", "faults"):
        img = web.get(f"/c/tab%2F1/plot/{kind}.png")
        assert img.headers["content-type"] == "image/png" and img.content[:4] == b"\x89PNG"
    assert web.get("/c/tab%2F1/plot/pie.png").status_code == 404
    table = list(csv.DictReader(io.StringIO(web.get("/c/tab%2F1/trials.csv").text)))
    assert len(table) == _sql(client, "SELECT count(*) FROM trials")
    assert {r["campaign"] for r in table} == {"tab/1"}
    assert len(web.get("/c/tab%2F1/trials.json").json()) == 80
    listing = list(csv.DictReader(io.StringIO(web.get("/campaigns.csv").text)))
    assert listing[0]["campaign"] == "tab/1"
    assert web.get("/c/nope").status_code == 404
    assert web.get("/static/dashboard.js").status_code == 200


def test_no_route_writes(client: Client) -> None:
    web = TestClient(create_app(client.engine))
    for method in ("post", "put", "delete", "patch"):
        for path in ("/", "/c/tab%2F1", "/api/c/tab%2F1/summary", "/c/tab%2F1/trials.csv"):
            assert getattr(web, method)(path).status_code == 405, (method, path)


def test_token_is_required_on_every_request_when_set(client: Client) -> None:
    app = create_app(client.engine, token="s3cret")
    web = TestClient(app)
    for path in ("/", "/api/campaigns", "/c/tab%2F1/plot/cost.png", "/static/dashboard.js"):
        assert web.get(path).status_code == 401, path
    assert web.get("/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert web.get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = web.get("/?token=s3cret")
    assert first.status_code == 200 and "httponly" in first.headers["set-cookie"].lower()
    assert web.get("/c/tab%2F1/plot/cost.png").status_code == 200  # the cookie carries it
    assert TestClient(app).get("/?token=nope").status_code == 401


def test_a_loopback_dashboard_refuses_other_host_names(client: Client) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 reaches the port, but
    its requests name evil.example."""
    from app.dashboard.server import allowed_hosts, host_of

    app = create_app(client.engine, hosts=allowed_hosts("127.0.0.1"))
    web = TestClient(app, base_url="http://127.0.0.1:8080")
    assert web.get("/").status_code == 200
    assert web.get("/", headers={"host": "localhost:8080"}).status_code == 200
    assert web.get("/", headers={"host": "[::1]:8080"}).status_code == 200
    assert web.get("/", headers={"host": "evil.example:8080"}).status_code == 421
    assert web.get("/api/campaigns", headers={"host": "evil.example"}).status_code == 421
    assert allowed_hosts("0.0.0.0") is None and allowed_hosts("10.0.0.5") == {"10.0.0.5"}
    assert host_of("[::1]:80") == "::1" and host_of("a.b:80") == "a.b" and host_of("::1") == "::1"
