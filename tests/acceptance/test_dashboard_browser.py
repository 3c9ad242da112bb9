"""The dashboard and the HTML report in a real browser (Debian's headless Chromium, driven by
Playwright; nothing is downloaded), against a live campaign on the real PostgreSQL, served by
`banditq dashboard` in a subprocess that connects as the read-only role of
`banditq db grant-reader`. Screenshots go to tests/artifacts/ (BANDITQ_TEST_ARTIFACTS)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

import pytest
from sqlalchemy import create_engine, text

from app import db
from app.client import Client
from app.config import Settings
from app.offline.tablecampaign import create_table_campaign, submit_table
from app.offline.tables import CostTable, relax_table
from tests.conftest import _admin, require
from tests.inline import InlineScheduler
from workers.run_trial import execute

pytestmark = pytest.mark.acceptance

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BANDITQ_TEST_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("BANDITQ_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
TOKEN = "t-" + uuid.uuid4().hex
EVIL = "<script>alert(1)</script>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _process(sch: InlineScheduler, n: int) -> int:
    """Run up to ``n`` trials through the real scheduler (executed inline)."""
    sch.sweep()
    done = 0
    while done < n:
        if not sch.published:
            sch.step()
            if not sch.published:
                break
        sch.feed(execute(sch.published.pop(0), "inline-worker"))
        sch.step()
        done += 1
    sch.snapshot_all()
    return done


@pytest.fixture
def reader_url(pg_url: str) -> Iterator[str]:
    role = f"bq_dash_{uuid.uuid4().hex[:8]}"
    db.grant_reader(pg_url, role, login=True)
    yield pg_url.replace("postgres@", f"{role}@", 1)
    own = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with own.connect() as c:  # the grants live in the test's database
        c.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'")
        )
        c.execute(text(f'DROP OWNED BY "{role}"'))
    own.dispose()
    eng = _admin()
    with eng.connect() as c:
        c.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
    eng.dispose()


@pytest.fixture
def browser() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), f"Chromium at {CHROMIUM} (make browser installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _reader_env(reader_url: str, home: Path, **extra: str) -> dict[str, str]:
    """This environment without BANDITQ_* settings, then the CLI as the reader role."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BANDITQ_")}
    env.update(BANDITQ_HOME=str(home), BANDITQ_DATABASE_URL=reader_url, **extra)
    return env


def _table_campaign(
    settings: Settings, name: str, variance: str, T: int, seed: int
) -> tuple[Client, CostTable]:
    """A campaign replaying a full-information table, its instances submitted (none run)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    client = Client(settings=settings)
    tab = relax_table(variance, T=T, seed=seed, m=8)
    submit_table(create_table_campaign(client, name, tab, max_in_flight=4), tab)
    return client, tab


def _serve(reader_url: str, port: int, tmp_path: Path) -> subprocess.Popen[str]:
    env = _reader_env(reader_url, tmp_path / "dash", BANDITQ_DASHBOARD_TOKEN=TOKEN)
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "dashboard", "--port", str(port), "--refresh", "0.5"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {proc.stdout.read() if proc.stdout else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("dashboard did not start listening within 30 s")


def _count(client: Client, sql: str, **params: Any) -> int:
    with client.engine.connect() as conn:
        return int(conn.execute(text(sql), params).scalar_one())


def _all_images_rendered(page: Any) -> None:
    page.wait_for_function(
        "() => { const i = Array.from(document.querySelectorAll('img[data-plot]'));"
        " return i.length > 0 && i.every(x => x.complete && x.naturalWidth > 0"
        " && x.naturalHeight > 0); }",
        timeout=30_000,
    )


def _only_this_host(urls: list[str]) -> None:
    for u in urls:
        p = urlparse(u)
        assert p.scheme in ("data", "file", "about") or p.hostname == "127.0.0.1", u


def test_dashboard_live_in_a_browser(
    pg_settings: Settings, reader_url: str, browser: Any, tmp_path: Path
) -> None:
    client, tab = _table_campaign(pg_settings, "omega-live", "low", T=160, seed=11)
    sch = InlineScheduler(pg_settings)
    _process(sch, 60)
    # A campaign whose name and error text hold HTML (the client refuses such names; the
    # dashboard must not trust what the database holds).
    bad = client.create_campaign("bad", "noop", [{"cost": 1.0}])
    bad.submit(None, {})
    _process(sch, 5)
    with client.engine.begin() as conn:
        conn.execute(text("UPDATE campaigns SET name = :n WHERE name = 'bad'"), {"n": EVIL})
        conn.execute(
            text(
                "UPDATE results SET status = 'failed', error = :e WHERE campaign_id = "
                "(SELECT id FROM campaigns WHERE name = :n)"
            ),
            {"e": "<img src=x onerror=alert(2)>boom", "n": EVIL},
        )
        conn.execute(
            text(
                "UPDATE trials SET state = 'failed' WHERE campaign_id = "
                "(SELECT id FROM campaigns WHERE name = :n)"
            ),
            {"n": EVIL},
        )

    port = _free_port()
    proc = _serve(reader_url, port, tmp_path)
    base = f"http://127.0.0.1:{port}"
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    page = ctx.new_page()
    urls: list[str] = []
    dialogs: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    try:
        assert page.goto(base + "/").status == 401  # the token is required
        assert page.goto(base + f"/?token={TOKEN}").status == 200
        row = page.locator('tr[data-campaign="omega-live"]')
        ok_sql = "SELECT count(*) FROM trial_results WHERE campaign = :c AND status = 'succeeded'"
        assert row.locator('td[data-key="succeeded"]').inner_text() == str(
            _count(client, ok_sql, c="omega-live")
        )
        assert page.locator(f'tr[data-campaign="{EVIL}"] a').inner_text() == EVIL
        page.screenshot(path=str(ARTIFACTS / "dashboard-index.png"), full_page=True)

        # The campaign page: numbers equal SQL counts, every plot rendered.
        live = ctx.new_page()
        live.on("request", lambda r: urls.append(r.url))
        live.goto(base + "/c/omega-live")
        _all_images_rendered(live)
        cell = live.locator('#summary td[data-key="succeeded"]')
        assert cell.inner_text() == str(_count(client, ok_sql, c="omega-live"))
        assert live.locator('#summary td[data-key="trials"]').inner_text() == str(
            _count(client, "SELECT count(*) FROM trial_results WHERE campaign = 'omega-live'")
        )
        first_src = live.locator('img[data-plot="cost"]').get_attribute("src")
        live.screenshot(path=str(ARTIFACTS / "dashboard-campaign-before.png"), full_page=True)

        # Results arrive: the page (and the list) update in place, no reload.
        # The count shown before is read first: the page may update as soon as results land.
        shown_before = int(cell.inner_text())
        _process(sch, 70)
        expect = str(_count(client, ok_sql, c="omega-live"))
        assert int(expect) > shown_before
        live.wait_for_function(
            "n => document.querySelector('#summary td[data-key=\"succeeded\"]').textContent === n",
            arg=expect,
            timeout=20_000,
        )
        live.wait_for_function(
            "s => document.querySelector('img[data-plot=\"cost\"]').getAttribute('src') !== s",
            arg=first_src,
            timeout=20_000,
        )
        _all_images_rendered(live)
        page.wait_for_function(
            'n => document.querySelector(\'tr[data-campaign="omega-live"] '
            'td[data-key="succeeded"]\').textContent === n',
            arg=expect,
            timeout=20_000,
        )
        live.screenshot(path=str(ARTIFACTS / "dashboard-campaign.png"), full_page=True)

        # The campaign with HTML in its name and error: shown as text, never run.
        evil = ctx.new_page()
        evil.on("request", lambda r: urls.append(r.url))
        evil.goto(base + "/c/" + quote(EVIL, safe=""))
        _all_images_rendered(evil)
        assert evil.locator("h1").inner_text() == EVIL
        assert "<img src=x onerror=alert(2)>boom" in evil.locator("#errors").inner_text()
        assert evil.locator("#errors img").count() == 0
        time.sleep(1.0)  # a refresh round re-renders the errors table from JSON
        assert dialogs == []

        # Downloads are the view's rows.
        csv_text = page.request.get(base + "/c/omega-live/trials.csv").text()
        assert len(csv_text.strip().splitlines()) == 1 + _count(
            client, "SELECT count(*) FROM trial_results WHERE campaign = 'omega-live'"
        )
    finally:
        ctx.close()
        proc.terminate()
        proc.wait(timeout=10)
    _only_this_host(urls)
    assert any("/plot/" in u for u in urls)


def test_report_opens_in_a_browser_without_network(
    pg_settings: Settings, reader_url: str, browser: Any, tmp_path: Path
) -> None:
    _client, tab = _table_campaign(pg_settings, "omega-report", "high", T=120, seed=5)
    _process(InlineScheduler(pg_settings), tab.T)
    env = _reader_env(reader_url, tmp_path / "h")
    out = subprocess.run(
        [sys.executable, "-m", "app.cli", "report", "omega-report", "-o", "r.html", "--png", "png"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "png" / "cost.png").stat().st_size > 5000
    ctx = browser.new_context(viewport={"width": 1100, "height": 900})
    page = ctx.new_page()
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    page.goto((tmp_path / "r.html").as_uri())
    _all_images_rendered(page)
    assert page.locator("img[data-plot]").count() == 7
    assert page.locator('#summary td[data-key="succeeded"]').inner_text() == str(tab.T)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    ctx.close()
    assert all(urlparse(u).scheme in ("file", "data") for u in urls), urls
    missing = subprocess.run(
        [sys.executable, "-m", "app.cli", "report", "nope"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no campaign named 'nope'" in missing.stderr
    assert "Traceback" not in missing.stderr
