// bettertest UI: the server renders every page and owns its state (ui.Model).
// This script only carries events: it opens one SSE stream for this tab,
// applies the fragments the server sends, and sends keys, clicks and history
// moves back. Without it every page still renders and every link works.
"use strict";
(() => {
  let session = null;
  let es = null;
  let retry = 500;
  let stick = true; // the log follows new output while it is scrolled to its end
  let scrolling = 0;
  let leaving = false; // a form was sent (Log out): the page goes, its stream with it
  document.addEventListener("submit", () => { leaving = true; });

  // A stream is for the page shown now. The first one is told the version
  // of the page the server sent, and begins with what changed since; after
  // a lost connection (or a page changed by the stream) the new session
  // sends the whole page again, so nothing missed stays stale.
  const connect = () => {
    const version = document.body.dataset.version;
    delete document.body.dataset.version;
    es = new EventSource("/ui/events?path=" + encodeURIComponent(location.pathname) +
      (version ? "&version=" + encodeURIComponent(version) : ""));
    const on = (name, f) => es.addEventListener(name, (e) => f(JSON.parse(e.data)));
    on("session", (id) => { session = id; retry = 500; });
    on("fragments", apply);
    on("url", (path) => { if (location.pathname !== path) history.pushState(null, "", path); });
    es.addEventListener("error", () => {
      es.close();
      session = null;
      if (leaving) return;
      const again = () => {
        setTimeout(connect, retry); // backoff: the boss may be restarting
        retry = Math.min(2 * retry, 10000);
      };
      // A session that ended sends this page to the login page: go there.
      fetch(location.pathname, { method: "HEAD", redirect: "manual" })
        .then((r) => (r.type === "opaqueredirect" ? location.reload() : again()), again);
    });
  };

  const focusable = (el) => Array.from(el.querySelectorAll("a, button, [tabindex]"));
  // A fragment's element: the one with its id, or that one's descendant down
  // its path of element children (the items of a list).
  const find = (id, path) => {
    let el = document.getElementById(id);
    for (const i of path) el = el && el.children[i];
    return el;
  };
  const apply = (frags) => {
    for (const f of frags) {
      if (f.op === "title") { document.title = f.html; continue; }
      const path = f.path || [];
      if (f.op === "insert" || f.op === "remove") {
        const parent = find(f.id, path.slice(0, -1));
        if (!parent) continue;
        const i = path[path.length - 1];
        if (f.op === "remove") {
          for (let n = 0; n < f.n && parent.children[i]; n++) parent.children[i].remove();
        } else if (parent.children[i]) {
          parent.children[i].insertAdjacentHTML("beforebegin", f.html);
        } else {
          parent.insertAdjacentHTML("beforeend", f.html);
        }
        continue;
      }
      const el = find(f.id, path);
      if (!el) continue;
      if (f.op === "append") { el.insertAdjacentHTML("beforeend", f.html); continue; }
      // Keyboard focus inside a replaced element moves to its counterpart.
      const active = document.activeElement;
      const at = el.contains(active) ? focusable(el).indexOf(active) : -2;
      el.outerHTML = f.html;
      if (at !== -2) {
        const now = find(f.id, path);
        const target = now && (at === -1 ? now : focusable(now)[at]);
        if (target) target.focus({ preventScroll: true });
      }
      if (f.id === "main") stick = true;
    }
    // Layout is read and written once a frame, however many events come.
    if (stick && !scrolling) {
      scrolling = requestAnimationFrame(() => {
        scrolling = 0;
        const log = document.getElementById("log");
        if (log) log.scrollTop = log.scrollHeight;
      });
    }
    const sel = document.querySelector('[aria-selected="true"]');
    if (sel && frags.some((f) => f.id === "main" || sel.closest("#" + CSS.escape(f.id || "-")))) sel.scrollIntoView({ block: "nearest" });
  };
  document.addEventListener("scroll", (e) => {
    if (e.target.id === "log") stick = e.target.scrollTop + e.target.clientHeight >= e.target.scrollHeight - 4;
  }, true);

  const send = (msg) => {
    if (!session) return false;
    fetch("/ui/sessions/" + session, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(msg) });
    return true;
  };
  const keys = new Set(["j", "k", "ArrowDown", "ArrowUp", "Enter", "Escape", "Backspace", "r", "c", "q", "m", "p", "f", "w", "?"]);
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || !keys.has(e.key)) return;
    // Enter on a focused link or button does what the mouse would.
    if (e.key === "Enter" && e.target.closest("a, button")) return;
    if (send({ key: e.key })) e.preventDefault();
  });
  const typed = { run: Number, on: (v) => v === "true" };
  document.addEventListener("click", (e) => {
    if (e.button !== 0 || e.ctrlKey || e.metaKey || e.shiftKey) return;
    const button = e.target.closest("button[data-action]");
    if (button) {
      // A button's data-* attributes are the message's fields: data-run a number, data-on a boolean.
      const msg = {};
      for (const [k, v] of Object.entries(button.dataset)) msg[k] = Object.hasOwn(typed, k) ? typed[k](v) : v;
      send(msg);
      return;
    }
    // The API's answers (an artifact's download) are the browser's to fetch, not pages of the UI:
    // a download saves a file and leaves the page; an error (the worker evicted it) shows.
    const a = e.target.closest("a[href^='/']:not([href^='/api/'])");
    if (a && !a.getAttribute("href").endsWith("/raw") && send({ nav: a.getAttribute("href") })) e.preventDefault();
  });
  window.addEventListener("popstate", () => send({ back: location.pathname }));
  connect();
})();
