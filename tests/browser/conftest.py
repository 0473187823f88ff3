"""Playwright against Debian's Chromium and pytest-django's live server.

Every test here:

* is marked ``browser``;
* shares one Chromium for the whole session (pytest-playwright's session
  ``browser``), with a fresh context and page per test;
* fails if any page it opened reported a Content-Security-Policy violation,
  a console error or an uncaught script error (``page_problems``, autouse).

Helpers for the tests: ``login(page, live_server, username)`` signs in through
the real form, ``screenshot(page, name)`` saves
``test-results/screenshots/<test name>/<name>.png`` under the repository root.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Error, Page, expect

from tests.factories import PASSWORD

# Playwright's sync API runs an event loop in the test thread; without this,
# creating the test database fails with SynchronousOnlyOperation.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_ROOT = REPO_ROOT / "test-results" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# Fail fast instead of waiting 30 s for an element that will never come.
TIMEOUT_MS = 10_000

# Injected by Playwright through the DevTools protocol before any page script,
# so the page's CSP does not apply to it. It keeps every violation in
# window.__cspViolations (for a look from the test) and reports it at once
# through the exposed binding, because a navigation discards the window.
CSP_LISTENER = """
(() => {
  window.__cspViolations = window.__cspViolations || [];
  document.addEventListener("securitypolicyviolation", (event) => {
    const violation = {
      page: document.location.href,
      directive: event.effectiveDirective || event.violatedDirective,
      blocked: event.blockedURI,
      source: event.sourceFile
        ? `${event.sourceFile}:${event.lineNumber}:${event.columnNumber}`
        : "",
      sample: event.sample || "",
      disposition: event.disposition,
    };
    window.__cspViolations.push(violation);
    if (typeof window.__reportCspViolation === "function") {
      window.__reportCspViolation(violation);
    }
  }, true);
})();
"""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict) -> dict:
    return {**browser_type_launch_args, "executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@dataclass
class PageProblems:
    """What went wrong in the browser during one test."""

    csp_violations: list[dict] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    # Console errors a test expects (regular expressions), e.g. a 4xx page.
    allowed: list[re.Pattern] = field(default_factory=list)

    def allow_console_error(self, pattern: str) -> None:
        self.allowed.append(re.compile(pattern))

    def record_console(self, message: ConsoleMessage) -> None:
        if message.type != "error":
            return
        location = message.location or {}
        where = location.get("url", "")
        if where and location.get("lineNumber") is not None:
            where += f":{location['lineNumber']}"
        self.console_errors.append(f"{message.text} ({where})" if where else message.text)

    def record_csp(self, violation: dict) -> None:
        if violation not in self.csp_violations:
            self.csp_violations.append(violation)

    def collect_from(self, page: Page) -> None:
        """Pick up violations still held by a page (a report in flight)."""
        if page.is_closed():
            return
        try:
            for violation in page.evaluate("window.__cspViolations || []"):
                self.record_csp(violation)
        except Error:
            pass  # the page is navigating or gone; the binding already reported

    def clear(self) -> None:
        """Forget what was recorded (for a test that provokes problems on purpose)."""
        self.csp_violations.clear()
        self.console_errors.clear()
        self.page_errors.clear()

    def report(self) -> list[str]:
        lines = [
            "CSP violation: {directive} blocked {blocked!r} on {page} {source} {sample}".format(
                **violation
            ).rstrip()
            for violation in self.csp_violations
        ]
        lines += [
            f"console error: {text}"
            for text in self.console_errors
            if not any(pattern.search(text) for pattern in self.allowed)
        ]
        lines += [f"uncaught page error: {text}" for text in self.page_errors]
        return lines


@pytest.fixture
def context(context: BrowserContext) -> BrowserContext:
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    return context


@pytest.fixture(autouse=True)
def page_problems(request: pytest.FixtureRequest):
    """Watch every page of the test's browser context; fail at teardown on
    any CSP violation, console error or uncaught script error."""
    problems = PageProblems()
    if "page" not in request.fixturenames and "context" not in request.fixturenames:
        yield problems
        return
    context: BrowserContext = request.getfixturevalue("context")
    context.expose_binding(
        "__reportCspViolation", lambda _source, violation: problems.record_csp(violation)
    )
    context.add_init_script(CSP_LISTENER)
    watched: list[Page] = []

    def watch(page: Page) -> None:
        if page in watched:
            return
        watched.append(page)
        page.on("console", problems.record_console)
        page.on("pageerror", lambda error: problems.page_errors.append(str(error)))

    context.on("page", watch)
    for page in context.pages:
        watch(page)
    yield problems
    for page in watched:
        problems.collect_from(page)
    found = problems.report()
    if found:
        pytest.fail(
            f"{len(found)} browser problem(s) in {request.node.nodeid}:\n  " + "\n  ".join(found),
            pytrace=False,
        )


@pytest.fixture
def page(context: BrowserContext, page_problems: PageProblems) -> Page:
    """pytest-playwright's page, created after the watcher is in place."""
    return context.new_page()


def _current_test_name() -> str:
    current = os.environ.get("PYTEST_CURRENT_TEST", "unknown-test")
    name = current.split("::")[-1].rsplit(" (", 1)[0]
    name = name.removesuffix("[chromium]")
    return re.sub(r"[^\w.\[\]-]+", "_", name)


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page PNG as test-results/screenshots/<test name>/<name>.png."""
    path = SCREENSHOT_ROOT / _current_test_name() / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    # caret="initial": the default hides the caret with an inline style, which a
    # later htmx swap would carry over (a CSP violation no person causes).
    page.screenshot(path=str(path), full_page=True, caret="initial")
    return path


def login(page: Page, live_server, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real allauth form and wait for the signed-in shell."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.locator("input[name=login]").fill(username)
    page.locator("input[name=password]").fill(password)
    page.locator("form").filter(has=page.locator("input[name=password]")).locator(
        "button[type=submit]"
    ).click()
    expect(page.get_by_test_id("current-user")).to_have_text(username)


@dataclass
class CheckQueue:
    """Check now queues a health check for a worker. In a browser test the
    test plays the worker: what the portal queues is recorded here (nothing
    reaches a broker) and ``run_all`` runs it, from the test's thread, when
    the test has seen the page waiting for it."""

    queued: list[tuple[tuple, dict]] = field(default_factory=list)

    def send(self, *args, **kwargs) -> None:
        self.queued.append((args, kwargs))

    def run_all(self) -> int:
        from connections.tasks import check_connection_task

        ran = 0
        while self.queued:
            args, kwargs = self.queued.pop(0)
            check_connection_task.run(*args, **kwargs)
            ran += 1
        return ran


@pytest.fixture
def check_queue(monkeypatch) -> CheckQueue:
    from connections.tasks import check_connection_task

    queue = CheckQueue()
    monkeypatch.setattr(check_connection_task, "delay", queue.send)
    return queue
