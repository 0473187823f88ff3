// Behaviour every page shares, for keyboard and screen reader users. Loaded as
// a file with defer (the CSP refuses inline scripts); runs again after each
// htmx swap.
(() => {
  "use strict";

  const ERROR_PREFIX = "Error: ";
  // Where a failed submit's errors are, best first: our error summary, an
  // error alert, allauth's error list, the first field at fault.
  const ERROR_TARGETS = [
    "main [data-error-summary]",
    "main .alert--error[role=alert]",
    "main .errorlist",
    "main [aria-invalid=true]",
  ];
  const handled = new WeakSet();

  function firstError() {
    for (const selector of ERROR_TARGETS) {
      const found = [...document.querySelectorAll(selector)].find(
        (el) => el.getClientRects().length > 0,
      );
      if (found) return found;
    }
    return null;
  }

  // A page (or a swapped form) with errors says so in its title and takes
  // focus there, so a screen reader user hears it instead of nothing; once
  // the errors are gone the title loses its prefix.
  function announceErrors() {
    const target = firstError();
    if (!target) {
      if (document.title.startsWith(ERROR_PREFIX)) {
        document.title = document.title.slice(ERROR_PREFIX.length);
      }
      return;
    }
    if (!document.title.startsWith(ERROR_PREFIX)) document.title = ERROR_PREFIX + document.title;
    if (handled.has(target)) return;
    handled.add(target);
    const focusable = target.matches("a[href], button, input, select, textarea, [tabindex]");
    if (!focusable) target.setAttribute("tabindex", "-1");
    target.focus({ preventScroll: true });
    target.scrollIntoView({ block: "center" });
  }

  // A wide table scrolls inside .table-scroll; only while it does is the box
  // a labelled region in the tab order (so it can be scrolled from the
  // keyboard), otherwise it would be a tab stop that does nothing.
  const watched = new WeakSet();
  const resizes = "ResizeObserver" in window ? new ResizeObserver(() => updateScrollers()) : null;

  function updateScrollers() {
    for (const box of document.querySelectorAll(".table-scroll")) {
      if (resizes && !watched.has(box)) {
        watched.add(box);
        resizes.observe(box);
        if (box.firstElementChild) resizes.observe(box.firstElementChild);
      }
      const scrolls = box.scrollWidth > box.clientWidth + 1;
      if (scrolls) {
        box.setAttribute("tabindex", "0");
        box.setAttribute("role", "region");
        box.setAttribute("aria-label", box.dataset.label || "Table");
      } else if (box.hasAttribute("tabindex")) {
        if (document.activeElement === box) continue;  // keep what has focus
        box.removeAttribute("tabindex");
        box.removeAttribute("role");
        box.removeAttribute("aria-label");
      }
    }
  }

  // A status line (role=status) arrives inside swapped content: a live region
  // that appears with its text already in it is not reliably read out, so it
  // is emptied and refilled once it is in the page.
  function reannounce(root) {
    const lines = root.matches("[data-announce]") ? [root] : [];
    lines.push(...root.querySelectorAll("[data-announce]"));
    for (const line of lines) {
      const text = line.textContent;
      line.textContent = "";
      window.setTimeout(() => { line.textContent = text; }, 150);
    }
  }

  function onLoad() {
    updateScrollers();
    announceErrors();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", onLoad);
  } else {
    onLoad();
  }
  // htmx fires afterSwap on each element it put in the page (for an
  // outerHTML swap, the new elements; for innerHTML, the target).
  document.addEventListener("htmx:afterSwap", (event) => {
    if (event.target instanceof Element && event.target.isConnected) reannounce(event.target);
  });
  document.addEventListener("htmx:afterSettle", () => {
    updateScrollers();
    announceErrors();
  });
})();
