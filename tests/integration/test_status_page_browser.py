"""The status page and /metrics of a real `qbhook serve` on the real bed (zfs-fuse pools, a real
qBittorrent), looked at by a real headless Chromium driven through chromedriver (selenium).

Screenshots land in the test's tmp dir; with QBHOOK_UPDATE_DOCS=1 the desktop one
also refreshes docs/status-page.png (a CI run never writes into the checkout).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from qbhook.sandbox.qbt import free_port
from qbhook.sandbox.scenario import NOHL, Scenario
from qbhook.sandbox.serve import start_serve, stop_serve
from qbhook.sandbox.torrents import add_and_wait_seeding, make_torrent, write_payload
from tests.integration.crash_helpers import QBHOOK_CMD

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
TOKEN = "page-e2e-token-" + "t" * 24
PASSWORD = "page-e2e-basic-" + "p" * 20
QBT_PASSWORD = "adminadmin"  # the bed's qBittorrent login: a secret for the page too
HOSTILE = "<script>alert(1)</script>"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ENV = {"QBHOOK_TOKEN": TOKEN, "QBHOOK_PASSWORD": PASSWORD}


def qbhook(cfg, *args):
    r = subprocess.run(
        [sys.executable, *QBHOOK_CMD, "--config", str(cfg), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **ENV},
    )
    if r.returncode not in (0, 10):
        raise AssertionError(f"qbhook {args} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


def get(url, headers=None):
    """(status, body) of a GET; 4xx/5xx are answers, not exceptions."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(
        "^" + re.escape(name) + (r"\{" + re.escape(want) + r"\}" if want else "") + r" (\S+)$", text, re.MULTILINE
    )
    assert m, f"{name} {labels} missing:\n{text}"
    return float(m.group(1))


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are needed (scripts/install-system-deps.sh)", pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(flag)
    driver = webdriver.Chrome(
        options=opts, service=Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    )
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(driver, url: str, width: int, out: Path) -> dict:
    """Load url at this width, grow the window to the page's height, save a PNG; return layout facts."""
    driver.set_window_size(width, 900)
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(height + 120, 8000))
    facts = driver.execute_script(
        "return {scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,"
        " scripts: document.scripts.length, title: document.title}"
    )
    driver.save_screenshot(str(out))
    return facts


@pytest.mark.slow
def test_status_page_in_chromium_and_metrics_after_a_real_demotion(pools, qbt, qbt_client, browser, tmp_path):
    sc = Scenario(stash=pools["stash"], pool=pools["pool"], torrent_dir=tmp_path / "torrents")
    for d in (sc.stash_seed, sc.pool_seed, sc.stash / "data/media/movies"):
        d.mkdir(parents=True, exist_ok=True)
    sc.movie_in_library(qbt_client)  # stays: library-linked
    sc.conflict_at_destination(qbt_client)  # blocked: other data at its pool path
    save = sc.stash_seed / "movies"  # demotable, and its name is hostile
    write_payload(save, {"Hostile.2024/hostile.mkv": 2 << 20}, seed=11)
    h = add_and_wait_seeding(
        qbt_client, make_torrent(save / "Hostile.2024", sc.torrent_dir / "h.torrent"), save, tags=[NOHL]
    )
    qbt_client.torrents_rename(torrent_hash=h, new_torrent_name=HOSTILE)

    port = free_port()
    data = sc.config_dict(tmp_path / "catalog.sqlite", qbt.url)
    data["server"] = {
        "listen": "127.0.0.1",
        "port": port,
        "username": "admin",
        "password_env": "QBHOOK_PASSWORD",
        "token_env": "QBHOOK_TOKEN",
        "sweep_interval": 3600,
    }
    cfg = tmp_path / "config.yaml"
    cfg.write_text(yaml.safe_dump(data))
    swept = json.loads(qbhook(cfg, "--json", "sweep").stdout)
    assert {g["action"] for g in swept["pending"]} == {"demote", "blocked"}, swept

    base = f"http://127.0.0.1:{port}"
    proc = start_serve(cfg, port, ENV, log=tmp_path / "serve.log")
    try:
        for path in ("/", "/metrics"):
            status, body = get(base + path)
            assert status == 401, (path, body)
            assert get(base + path, {"X-Qbhook-Token": "wrong"})[0] == 401
            assert get(base + f"{path}?token={TOKEN}")[0] == 401
        auth = {"X-Qbhook-Token": TOKEN}
        basic = {"Authorization": "Basic " + base64.b64encode(f"admin:{PASSWORD}".encode()).decode()}
        status, before = get(base + "/metrics", basic)
        assert status == 200
        assert metric(before, "qbhook_last_sweep_groups", decision="demote") == 1
        assert metric(before, "qbhook_last_sweep_groups", decision="blocked") == 1
        assert metric(before, "qbhook_copied_bytes_total") == 0
        assert metric(before, "qbhook_runs", status="done") == 0
        assert metric(before, "qbhook_hashed_bytes") > 0

        # Chromium sends the token on every request (DevTools: extra headers).
        browser.execute_cdp_cmd("Network.enable", {})
        browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": auth})
        desktop = tmp_path / "status-desktop.png"
        facts = screenshot(browser, base + "/", 1100, desktop)
        text = browser.find_element("tag name", "body").text
        source = browser.page_source
        assert facts["title"] == "qbhook status" and facts["scripts"] == 0
        heads = [e.text for e in browser.find_elements("css selector", "article.pool h3")]
        assert sorted(heads) == ["pool cold", "stash primary"], heads
        assert len(browser.find_elements("css selector", "svg.bar")) == 4  # capacity + kinds, per pool
        assert "library-linked" in text and "orphaned" in text
        stash = next(
            e.text for e in browser.find_elements("css selector", "article.pool") if e.text.startswith("stash")
        )
        assert "blocked\n1 group(s), 1.0 MiB" in stash, stash  # sizes recorded by the sweep
        assert re.search(r"library-linked\n3\.0 MiB", stash), stash
        plan = browser.find_element("css selector", "ol.plan").text
        assert HOSTILE in plan and "DEMOTE" in plan and "stash → pool" in plan  # shown as text, not run
        assert "BLOCKED" in plan
        assert not browser.find_elements("css selector", "main script")
        for secret in (TOKEN, PASSWORD, QBT_PASSWORD):
            assert secret not in source and secret not in before
        phone = screenshot(browser, base + "/", 390, tmp_path / "status-phone.png")
        assert phone["scrollWidth"] <= phone["innerWidth"], phone  # no sideways scrolling on a phone

        # A real demotion, by another process: the page and /metrics read it from the database.
        qbhook(cfg, "apply", "--yes", "--hash", h)
        after = get(base + "/metrics", auth)[1]
        assert metric(after, "qbhook_runs", status="done") == 1
        assert metric(after, "qbhook_copied_bytes_total") >= 2 << 20
        assert metric(after, "qbhook_freed_bytes_total") >= 2 << 20
        assert metric(after, "qbhook_groups", state="done") == 1
        screenshot(browser, base + "/", 390, tmp_path / "status-after-apply-phone.png")
        after_desktop = screenshot(browser, base + "/", 1100, tmp_path / "status-after-apply.png")
        assert after_desktop["scripts"] == 0
        if os.environ.get("QBHOOK_UPDATE_DOCS") == "1":  # refresh the README's screenshot on demand only
            shutil.copy(tmp_path / "status-after-apply.png", REPO / "docs/status-page.png")
        runs = browser.find_element("css selector", "table").text
        assert "done" in runs and "2.0 MiB" in runs
        assert "since then: done" in browser.find_element("css selector", "ol.plan").text
        for secret in (TOKEN, PASSWORD, QBT_PASSWORD):
            assert secret not in browser.page_source and secret not in after
    finally:
        stop_serve(proc)
