"""The chat page and the live view of the loop in a real browser.

Debian's chromium, driven by selenium through Debian's chromedriver (both
installed by tests/install_components.sh; no browser is downloaded, and
selenium is given both paths so it never looks for one). Where they are
missing the tests skip, and fail under ``CI=true``.

Each test keeps a screenshot in its pytest tmp dir (the path is printed;
``pytest -s`` shows it). ``REACTOR_SCREENSHOTS=docs`` also writes them to
``docs/`` (``web-chat.png``, ``web-monitor.png``: the README's picture).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from .test_chat import DEADLINE, ROOT, server_factory  # noqa: F401 (a fixture)
from .test_chat_irc import barrier, irc, need
from .test_chat_web import need_module
from .test_chat_web_clients import web_port

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1000,640"]


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = need("chromium"), need("chromedriver")
    need_module("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'profile'}")  # fresh: nothing from an earlier run
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the page's console, for errors
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    driver.set_page_load_timeout(DEADLINE)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, what: str):
    """Poll *condition(driver)* (the page changes in another process) until true, with a deadline."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait
    try:
        return WebDriverWait(driver, DEADLINE, poll_frequency=0.05).until(condition)
    except TimeoutException:
        raise AssertionError(f"{what} not seen within {DEADLINE}s") from None


def text_of(driver, element_id: str) -> str:
    return driver.execute_script(f"return document.getElementById('{element_id}').textContent")


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def keep(driver, tmp_path: Path, name: str) -> Path:
    """A screenshot, kept in the test's tmp dir (and in $REACTOR_SCREENSHOTS if set)."""
    path = tmp_path / name
    driver.save_screenshot(str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
    print(f"screenshot: {path}")
    if os.environ.get("REACTOR_SCREENSHOTS"):
        shutil.copy(path, ROOT / os.environ["REACTOR_SCREENSHOTS"] / name)
    return path


def test_a_browser_chats_with_nc_and_irc_users(server_factory, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    server = server_factory("--web-port", "0", "--irc-port", "0")
    nc = server.client("ncuser")
    nc.send("/join dev")
    nc.read_until("*** ncuser joined #dev")
    nc.send("/topic the reactor, in a browser")
    ircu = irc(server, "ircuser")
    ircu.send("JOIN #dev")
    barrier(ircu)

    browser.get(f"http://127.0.0.1:{web_port(server)}/")
    assert browser.title == "reactor chat"
    browser.find_element(By.ID, "nick").send_keys("alice", Keys.ENTER)  # a nickname
    wait(browser, lambda d: d.find_element(By.ID, "chat").is_displayed(), "the chat after the nickname")
    wait(browser, lambda d: "you joined #lobby" in text_of(d, "log"), "the lobby")  # where everyone starts

    line = browser.find_element(By.ID, "line")
    line.send_keys("/join dev", Keys.ENTER)  # a room
    wait(browser, lambda d: "you joined #dev" in text_of(d, "log"), "the join")
    assert [b.text for b in browser.find_elements(By.CSS_SELECTOR, "#tabs button")] == ["#lobby", "#dev"]
    wait(browser, lambda d: "ircuser" in text_of(d, "members"), "the room's people")
    assert text_of(browser, "topic") == "the reactor, in a browser"
    nc.read_until("*** alice joined #dev")

    line.send_keys("hello from a browser", Keys.ENTER)  # to nc, and to IRC
    nc.read_until("<alice> hello from a browser")
    ircu.read_until(lambda l: l.endswith("PRIVMSG #dev :hello from a browser"))
    nc.send("hello, browser")  # from nc
    wait(browser, lambda d: "<ncuser> hello, browser" in text_of(d, "log"), "the nc user's line")
    ircu.send("PRIVMSG #dev :and hello from IRC")  # and from IRC
    wait(browser, lambda d: "<ircuser> and hello from IRC" in text_of(d, "log"), "the IRC user's line")
    line.send_keys("/me waves to everyone", Keys.ENTER)
    nc.read_until("* alice waves to everyone")
    wait(browser, lambda d: "alice waves to everyone" in text_of(d, "log"), "the action")
    keep(browser, tmp_path, "web-chat.png")

    nc.send("<b>not bold</b> <img src=x onerror=alert(1)>")  # shown as text, never as HTML
    wait(browser, lambda d: "<img src=x onerror=alert(1)>" in text_of(d, "log"), "markup as text")
    assert not browser.find_elements(By.CSS_SELECTOR, "#log img, #log b")
    assert console_errors(browser) == []
    line.send_keys("/quit good night", Keys.ENTER)
    nc.read_until("*** alice quit (good night)")
    wait(browser, lambda d: "disconnected" in text_of(d, "status"), "the closed socket")
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def test_the_monitor_page_draws_the_loop_live(server_factory, browser, tmp_path):
    from selenium.webdriver.common.by import By

    server = server_factory("--web-port", "0", "--web-monitor")
    server.client("ncuser")
    browser.get(f"http://127.0.0.1:{web_port(server)}/reactor")
    assert browser.title == "reactor, live"
    wait(browser, lambda d: text_of(d, "iterations") != "–", "the first sample")
    wait(browser, lambda d: d.execute_script("return samples.length") >= 2, "a second sample")
    rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#connection-rows tr")]
    assert any("ncuser" in r and "line" in r for r in rows) and any("web monitor" in r for r in rows)
    drawn = browser.execute_script("""
        const c = document.getElementById('chart-time');
        return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v) => v !== 0);""")
    assert drawn  # the chart is pixels on the canvas, drawn by reactor.js
    assert int(text_of(browser, "connections")) >= 2 and text_of(browser, "users") == "1"
    keep(browser, tmp_path, "web-monitor.png")
    assert console_errors(browser) == []
    code, err = server.stop()
    assert code == 0 and "Traceback" not in err
