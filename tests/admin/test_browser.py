"""End to end in headless Chromium: log in, approve an escalation, watch the job finish; no script runs from data.

Needs the Debian packages chromium and chromium-driver (/usr/bin/chromium,
/usr/bin/chromedriver); Selenium is given the driver's path, so Selenium
Manager never looks for, or downloads, a browser. Screenshots of the
pages land in docs/screenshots/ (or $ENVOY_SCREENSHOT_DIR).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from envoy_django.models import Escalation, Job
from envoy_django.testing.processes import wait_until
from tests.admin.conftest import EVIL
from tests.support import close_thread_connection

pytestmark = pytest.mark.django_db(transaction=True)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROME_ARGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--window-size=1280,900",
)
SCREENSHOTS = Path(
    os.environ.get("ENVOY_SCREENSHOT_DIR") or Path(__file__).resolve().parents[2] / "docs" / "screenshots"
)
TIMEOUT = 15.0


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.skip(f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium chromium-driver")
    pytest.importorskip("selenium", reason="needs selenium (pip install -e '.[test]')")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: the explicit driver path already skips Selenium Manager
    options = Options()
    options.binary_location = str(CHROMIUM)
    for arg in CHROME_ARGS:
        options.add_argument(arg)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    # Leave any alert open, so the tests can look for it instead of it being dismissed.
    options.set_capability("unhandledPromptBehavior", "ignore")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_window_size(1280, 900)
    try:
        yield driver
    finally:
        driver.quit()


def log_in(browser: Any, base_url: str, username: str, next_path: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(f"{base_url}/admin/login/?next={quote(next_path)}")
    browser.find_element(By.NAME, "username").send_keys(username)
    browser.find_element(By.NAME, "password").send_keys("pw")
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait_until(lambda: browser.current_url.endswith(next_path), TIMEOUT, f"the login to land on {next_path}")
    # The address changes as the new page starts loading; its elements are there once it has loaded.
    wait_until(lambda: browser.execute_script("return document.readyState") == "complete", TIMEOUT,
               f"{next_path} to load")


def assert_no_alert(browser: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert  # noqa: B018  (the property raises when no dialog is open)


def text_shown(browser: Any, css: str) -> str:
    """The text of the first element matching css, or "" while there is none.

    Looked up at each call: a job page swaps its content in when the job
    moves, and an element read in the middle of that swap is stale.
    """
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    try:
        found = browser.find_elements(By.CSS_SELECTOR, css)
        return found[0].text if found else ""
    except StaleElementReferenceException:
        return ""


def job_status_shown(browser: Any) -> str:
    return text_shown(browser, ".field-status_badge .envoy-badge")


def test_approve_an_escalation_and_see_the_job_finish(live_server: Any, browser: Any, make_user: Any,
                                                      family: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    make_user("alice", "reply_escalation", "view_job", "view_escalation")
    job_id, escalation = family()

    log_in(browser, live_server.url, "alice", "/admin/envoy_django/escalation/")
    # Screenshots with the app sidebar folded away, so the pages get the width.
    browser.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    browser.find_element(By.LINK_TEXT, "Approve this action?").click()
    wait_until(lambda: browser.current_url.endswith(f"/escalation/{escalation.pk}/reply/"), TIMEOUT, "the reply page")
    Select(browser.find_element(By.NAME, "input-reason")).select_by_value("a")
    browser.find_element(By.NAME, "input-note").send_keys("Checked the payment.")
    browser.find_element(By.NAME, "input-ok").click()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "approval_page.png"))

    browser.find_element(By.CSS_SELECTOR, "button[name=decision][value=approved]").click()
    wait_until(lambda: browser.current_url.endswith(f"/job/{job_id}/change/"), TIMEOUT, "the redirect to the job page")

    def done() -> bool:
        if job_status_shown(browser) == "done":
            return True
        browser.refresh()
        return False

    wait_until(done, TIMEOUT, "the job page to show the job done")
    assert "Approved" in browser.find_element(By.CSS_SELECTOR, ".messagelist").text
    browser.save_screenshot(str(SCREENSHOTS / "job_page.png"))
    job = Job.objects.get(pk=job_id)
    assert job.status == "done"
    assert job.output["reply"]["value"] == {"reason": "a", "note": "Checked the payment.", "ok": True}
    assert Escalation.objects.get(pk=escalation.pk).replied_by_username == "alice"


def test_script_in_flow_data_never_runs(live_server: Any, browser: Any, make_user: Any, evil_job: Any) -> None:
    from selenium.webdriver.common.by import By

    make_user("root", superuser=True)
    job_id, escalation = evil_job
    log_in(browser, live_server.url, "root", "/admin/envoy_django/escalation/?assigned=all")
    pages = [
        "/admin/envoy_django/escalation/?assigned=all",
        f"/admin/envoy_django/escalation/{escalation.pk}/reply/",
        f"/admin/envoy_django/escalation/{escalation.pk}/change/",
        "/admin/envoy_django/job/",
        f"/admin/envoy_django/job/{job_id}/change/",
    ]
    for page in pages:
        browser.get(live_server.url + page)
        assert_no_alert(browser)
        assert EVIL in browser.find_element(By.TAG_NAME, "body").text, page  # shown as text, not run
        injected = browser.execute_script(
            "return Array.from(document.scripts).some(s => s.text.includes('alert(1)'))"
        )
        assert not injected, page


def test_an_unfinished_jobs_page_follows_the_job_without_a_reload(live_server: Any, browser: Any, make_user: Any,
                                                                   family: Any) -> None:
    from selenium.webdriver.common.by import By

    from envoy_django import scheduler

    make_user("root", superuser=True)
    job_id, escalation = family()
    log_in(browser, live_server.url, "root", f"/admin/envoy_django/job/{job_id}/change/")
    wait_until(lambda: job_status_shown(browser) == "blocking", TIMEOUT, "the page to show the job blocking")
    browser.execute_script("window.envoyNotReloaded = true")

    scheduler.reply_to_escalation(escalation.pk, {"reason": "a", "ok": True}, "approved", user="alice")

    wait_until(lambda: job_status_shown(browser) == "done", 30, "the page to show the job done by itself")
    assert browser.execute_script("return window.envoyNotReloaded === true"), "the page was reloaded"
    assert "Finish" in browser.find_element(By.ID, "envoy-history").text


@pytest.mark.services  # PostgreSQL's: a job writing in one thread while pages read in others locks SQLite's tables
def test_a_running_agents_page_shows_the_model_output_as_it_streams(live_server: Any, browser: Any,
                                                                   make_user: Any) -> None:
    import threading

    from selenium.webdriver.common.by import By

    from envoy_django import scheduler
    from envoy_django.testing.openai_server import ScriptedOpenAIServer, text_reply
    from tests.testapp import agent_flows

    make_user("root", superuser=True)
    release = threading.Event()
    reply = text_reply("Four. Two plus two is four.", pieces=["Four. ", "Two plus ", "two ", "is four."],
                       hold=release)

    def run() -> None:
        try:
            scheduler.schedule("assistant", "What is 2 + 2?")
        finally:
            close_thread_connection()

    with ScriptedOpenAIServer([reply]) as server:
        agent_flows.endpoint.point_at(server.base_url)
        runner = threading.Thread(target=run)
        runner.start()
        try:
            job = wait_until(lambda: Job.objects.filter(flow="assistant", status="running").first(), TIMEOUT,
                             "the agent's job to run")
            log_in(browser, live_server.url, "root", f"/admin/envoy_django/job/{job.pk}/change/")

            def shown() -> str:
                return text_shown(browser, "#envoy-stream:not([hidden]) .envoy-stream__text").strip()

            wait_until(lambda: shown() == "Four. Two plus", 30,
                       "the text so far (the pieces before the pause) on the page")
            browser.execute_script("document.getElementById('envoy-stream').scrollIntoView()")
            browser.save_screenshot(str(SCREENSHOTS / "streaming_job_page.png"))
        finally:
            release.set()
            runner.join(60)
            agent_flows.endpoint.reset()
    wait_until(lambda: job_status_shown(browser) == "done", 30, "the page to show the job done")
    assert not browser.find_elements(By.CSS_SELECTOR, "#envoy-stream:not([hidden])")
    wait_until(lambda: "Two plus two is four." in text_shown(browser, "#content-main"), TIMEOUT,
               "the final message in the job's history")


def test_the_overview_page(live_server: Any, browser: Any, make_user: Any, family: Any) -> None:
    from selenium.webdriver.common.by import By

    from envoy_django import scheduler

    make_user("root", superuser=True)
    family()
    for _ in range(5):
        scheduler.schedule("hello")
    log_in(browser, live_server.url, "root", "/admin/envoy_django/overview/")
    assert "family" in browser.find_element(By.ID, "envoy-overview-unfinished").text
    assert browser.find_elements(By.CSS_SELECTOR, "#envoy-overview-hour svg rect.envoy-chart__done")
    browser.save_screenshot(str(SCREENSHOTS / "overview_page.png"))
