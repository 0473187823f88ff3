"""Accessibility checks for the browser tests.

``check_page(page, label)`` runs, on the page as it stands:

* axe-core (WCAG 2.0/2.1 A and AA plus best practice) at the test's own
  viewport and again at 640 px wide, failing with each violation listed
  (rule, impact, help, the elements and why);
* every ``aria-describedby`` / ``aria-labelledby`` / ``aria-controls`` /
  ``aria-errormessage`` id reference points at an element that exists (axe
  does not count a dangling description, a screen reader user meets it as
  silence);
* the reflow check: at 640 x 900 CSS px (a 1280 px window at 200 % zoom) the
  page does not scroll sideways (``scrollWidth <= innerWidth``, with the
  elements that stick out named on failure) and the key controls (the top
  bar's links and Sign out, plus any the caller names) lie inside the
  viewport;

then puts the viewport back. ``screenshot_as`` saves the 640 px view.
"""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Locator, Page

from tests.browser.conftest import screenshot

AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
REFLOW_VIEWPORT = {"width": 640, "height": 900}
DEFAULT_VIEWPORT = {"width": 1280, "height": 720}

_axe = Axe()

# Layout settles in a frame; the table-scroll watcher (portal.js) runs from a
# ResizeObserver, i.e. before the next paint. Two frames cover both.
TWO_FRAMES = "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))"

OVERFLOW_REPORT = """
() => {
  const limit = window.innerWidth;
  const describe = (el) => {
    let text = el.tagName.toLowerCase();
    if (el.id) text += "#" + el.id;
    const classes = [...el.classList].slice(0, 3);
    if (classes.length) text += "." + classes.join(".");
    return text;
  };
  const out = [];
  for (const el of document.body.querySelectorAll("*")) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 || box.right <= limit + 0.5) continue;
    // Only the outermost offender in a subtree that sticks out; skip what a
    // scrolling ancestor holds (it scrolls inside that box, not the page).
    let parent = el.parentElement, inside = false;
    while (parent && parent !== document.body) {
      const style = getComputedStyle(parent);
      if (["auto", "scroll", "hidden", "clip"].includes(style.overflowX)) { inside = true; break; }
      if (parent.getBoundingClientRect().right > limit + 0.5) { inside = true; break; }
      parent = parent.parentElement;
    }
    if (!inside) out.push(`${describe(el)} reaches ${Math.round(box.right)} px`);
  }
  if (!out.length) {
    // Something positioned out of its scrolling box (e.g. absolute text).
    for (const el of document.body.querySelectorAll("*")) {
      const box = el.getBoundingClientRect();
      if (box.right > limit + 0.5) out.push(`${describe(el)} reaches ${Math.round(box.right)} px`);
    }
    out.reverse();
  }
  return {
    scrollWidth: document.documentElement.scrollWidth,
    innerWidth: limit,
    offenders: out.slice(0, 10),
  };
}
"""

DANGLING_REFERENCES = """
() => {
  const attrs = ["aria-describedby", "aria-labelledby", "aria-controls", "aria-errormessage"];
  const out = [];
  for (const attr of attrs) {
    for (const el of document.querySelectorAll(`[${attr}]`)) {
      for (const id of el.getAttribute(attr).split(/\\s+/).filter(Boolean)) {
        if (!document.getElementById(id)) {
          const name = el.id || el.getAttribute("name") || el.tagName.toLowerCase();
          out.push(`${name}: ${attr} -> #${id} (missing)`);
        }
      }
    }
  }
  return out;
}
"""


def axe_violations(page: Page) -> list[dict]:
    """axe-core's violations on the page as it is now (WCAG 2.1 A/AA, best practice).

    axe is injected once per document (through the DevTools protocol, so the
    page's CSP does not apply), then run as often as the test asks."""
    if not page.evaluate("typeof window.axe === 'object'"):
        page.evaluate(_axe.axe_script)
    options = {"runOnly": {"type": "tag", "values": AXE_TAGS}, "resultTypes": ["violations"]}
    return page.evaluate("options => axe.run(document, options)", options)["violations"]


def format_violations(violations: list[dict]) -> list[str]:
    lines = []
    for violation in violations:
        lines.append(
            f"{violation['id']} ({violation.get('impact') or 'n/a'}): {violation['help']}"
            f" [{violation['helpUrl'].split('?')[0]}]"
        )
        for node in violation["nodes"][:6]:
            target = " ".join(str(part) for part in node.get("target", []))
            why = (node.get("failureSummary") or "").replace("\n", " ").strip()
            lines.append(f"    {target}: {why}")
        if len(violation["nodes"]) > 6:
            lines.append(f"    ... and {len(violation['nodes']) - 6} more")
    return lines


def axe_problems(page: Page) -> list[str]:
    violations = axe_violations(page)
    if not violations:
        return []
    return [f"axe: {len(violations)} violation(s)", *format_violations(violations)]


def reference_problems(page: Page) -> list[str]:
    return [f"ARIA reference to nothing: {text}" for text in page.evaluate(DANGLING_REFERENCES)]


def key_controls(page: Page) -> list[Locator]:
    """The top bar's links and its Sign out button (signed-in pages)."""
    nav = page.locator("header .topnav")
    return [*nav.get_by_role("link").all(), *nav.get_by_role("button").all()]


def reflow_problems(page: Page, controls: Iterable[Locator] = ()) -> list[str]:
    """At the current (narrow) viewport: no sideways scroll, key controls in view."""
    page.evaluate(TWO_FRAMES)
    report = page.evaluate(OVERFLOW_REPORT)
    width = report["innerWidth"]
    problems = []
    if report["scrollWidth"] > width:
        problems.append(
            f"reflow: the page is {report['scrollWidth']} px wide in a {width} px "
            "viewport (it scrolls sideways)"
        )
        problems += [f"    {offender}" for offender in report["offenders"]]
    for control in [*key_controls(page), *controls]:
        box = control.bounding_box()
        label = (control.text_content() or "").strip() or str(control)
        if box is None:
            problems.append(f"reflow: {label!r} is not displayed")
        elif box["x"] < 0 or box["x"] + box["width"] > width + 0.5:
            problems.append(
                f"reflow: {label!r} lies outside the viewport (x {box['x']:.0f} to "
                f"{box['x'] + box['width']:.0f}, viewport {width})"
            )
    return problems


def page_problems_at_both_widths(
    page: Page, *, controls: Iterable[Locator] = (), screenshot_as: str | None = None
) -> list[str]:
    """axe and the id references at the test's viewport, then the reflow
    check and axe again at 640 px; the viewport is put back after."""
    before = page.viewport_size or DEFAULT_VIEWPORT
    problems = axe_problems(page) + reference_problems(page)
    page.set_viewport_size(REFLOW_VIEWPORT)
    try:
        problems += reflow_problems(page, controls)
        problems += [
            f"at 640 px, {line}" if line.startswith("axe") else line for line in axe_problems(page)
        ]
        if screenshot_as:
            screenshot(page, screenshot_as)
    finally:
        page.set_viewport_size(before)
    return problems


def check_page(
    page: Page,
    where: str,
    *,
    controls: Iterable[Locator] = (),
    screenshot_as: str | None = None,
) -> None:
    """Fail at once if the page has an accessibility or reflow problem."""
    problems = page_problems_at_both_widths(page, controls=controls, screenshot_as=screenshot_as)
    if problems:
        pytest.fail(f"{where} ({page.url}):\n  " + "\n  ".join(problems), pytrace=False)


class Tour:
    """Checks several pages in one test and fails once at the end, listing
    every page's problems (so one run shows all that is wrong)."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def check(
        self,
        page: Page,
        where: str,
        *,
        controls: Iterable[Locator] = (),
        screenshot_as: str | None = None,
    ) -> None:
        problems = page_problems_at_both_widths(
            page, controls=controls, screenshot_as=screenshot_as
        )
        if problems:
            self.found.append(f"{where} ({page.url}):\n    " + "\n    ".join(problems))

    def expect(self, ok: bool, problem: str) -> None:
        if not ok:
            self.found.append(problem)

    def assert_clean(self) -> None:
        if self.found:
            pytest.fail(
                f"{len(self.found)} page(s) or behaviour(s) with problems:\n"
                + "\n".join(self.found),
                pytrace=False,
            )


def contrast_ratio(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """WCAG contrast ratio of two sRGB colours given as 0-255 triples."""

    def luminance(rgb: tuple[float, float, float]) -> float:
        channels = []
        for value in rgb:
            c = value / 255
            channels.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
        return 0.2126 * channels[0] + 0.7152 * channels[1] + 0.0722 * channels[2]

    light, dark = sorted((luminance(first), luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


FOCUS_COLOURS = """
(el) => {
  const rgb = (text) => (text.match(/rgba?\\(([^)]+)\\)/) || [null, ""])[1]
    .split(",").slice(0, 4).map(Number);
  const style = getComputedStyle(el);
  let node = el.parentElement, background = null;
  while (node) {
    const colour = rgb(getComputedStyle(node).backgroundColor);
    if (colour.length === 3 || colour[3] > 0) { background = colour; break; }
    node = node.parentElement;
  }
  const rings = [];
  if (style.outlineStyle !== "none" && parseFloat(style.outlineWidth) >= 2) {
    rings.push(rgb(style.outlineColor));
  }
  for (const match of style.boxShadow.matchAll(/rgba?\\([^)]+\\)/g)) rings.push(rgb(match[0]));
  return {background: background || [255, 255, 255], rings};
}
"""


def focus_ring_contrast(locator: Locator) -> float:
    """The best contrast one of the focused element's rings (outline, box
    shadows) has with the background around the element."""
    colours = locator.evaluate(FOCUS_COLOURS)
    background = tuple(colours["background"][:3])
    best = 0.0
    for ring in colours["rings"]:
        if len(ring) == 4 and ring[3] == 0:
            continue
        best = max(best, contrast_ratio(tuple(ring[:3]), background))
    return best
