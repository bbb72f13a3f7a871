// Keyboard shortcuts of the curation page. Each key clicks one of the page's buttons, so the
// keyboard and the mouse take the same path to the server.
// - ignored while typing in a text field, and with Ctrl/Alt/Meta held;
// - a held key (auto-repeat) fires once;
// - one action at a time: a key pressed while the previous action is in flight is dropped
//   (the server also refuses to apply one item's decision twice: idempotency keys).
(function () {
  if (window.__sp) return;

  // The login form shows only "Incorrect credentials" (HTTP 400). An attempt the server refuses
  // without checking the password (429: paused after repeated failures; 503: busy) would show
  // nothing at all, so its reason is shown above the form.
  const originalFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const response = await originalFetch(input, init);
    if (response.status === 429 || response.status === 503) {
      const url = new URL(typeof input === "string" ? input : (input && input.url) || "", location.href);
      if (/\/login\/?$/.test(url.pathname)) {
        response.clone().json().then((body) => loginNote(body.detail || "Sign-in refused: try again later."))
          .catch(() => loginNote("Sign-in refused: try again later."));
      }
    }
    return response;
  };
  function loginNote(text) {
    let note = document.getElementById("sp-login-note");
    if (!note) {
      note = document.createElement("div");
      note.id = "sp-login-note";
      note.setAttribute("role", "alert");
      document.body.prepend(note);
    }
    note.textContent = text;
  }

  const sp = (window.__sp = { pending: false, since: 0, rev: null, selected: -1, choice: "" });
  const ACTIONS = { a: "sp-accept", r: "sp-reject", s: "sp-skip", u: "sp-undo", p: "sp-toggle", v: "sp-review" };
  const IN_FLIGHT_LIMIT_MS = 8000; // after this, a lost response no longer blocks the keys

  const item = () => document.querySelector("#sp-view .sp-item");
  const candidates = () => Array.from(document.querySelectorAll("#sp-view .sp-cand"));

  function typing(el) {
    if (!el || !el.tagName) return false;
    if (el.isContentEditable || el.tagName === "TEXTAREA" || el.tagName === "SELECT") return true;
    if (el.tagName !== "INPUT") return false;
    return !["checkbox", "radio", "button", "submit", "reset", "range"].includes((el.type || "").toLowerCase());
  }

  function press(id) {
    if (sp.pending && performance.now() - sp.since < IN_FLIGHT_LIMIT_MS) return false;
    const button = document.getElementById(id);
    if (!button) return false;
    sp.pending = true;
    sp.since = performance.now();
    button.click();
    return true;
  }

  function select(index) {
    const all = candidates();
    if (!all.length) return;
    sp.selected = Math.max(0, Math.min(all.length - 1, index));
    all.forEach((el, i) => el.classList.toggle("sp-selected", i === sp.selected));
    all[sp.selected].scrollIntoView({ block: "nearest" });
  }

  function columns() {
    const all = candidates();
    if (!all.length) return 1;
    const top = all[0].offsetTop;
    return Math.max(1, all.filter((el) => el.offsetTop === top).length);
  }

  function pick(file) {
    sp.choice = file;
    press("sp-pick");
  }

  // A new response re-renders the item with a new data-rev: the action is done.
  new MutationObserver(() => {
    const el = item();
    const rev = el ? el.dataset.rev : null;
    if (rev && rev !== sp.rev) {
      sp.rev = rev;
      sp.pending = false;
      sp.selected = -1;
      window.dispatchEvent(new CustomEvent("sp:rendered", { detail: { rev: rev, key: el.dataset.key } }));
    }
  }).observe(document.documentElement, { childList: true, subtree: true, attributes: true, attributeFilter: ["data-rev"] });

  document.addEventListener(
    "keydown",
    (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e.target)) return;
      const el = item();
      if (!el || !el.dataset.mode) return; // login page, or the app has not loaded yet
      const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      const mode = el.dataset.mode;
      const known = ACTIONS[key] || ("1" <= key && key <= "6") ||
        (mode === "pick" && ["ArrowLeft", "ArrowRight", "ArrowUp", "ArrowDown", "Enter"].includes(key));
      if (!known) return;
      e.preventDefault();
      e.stopPropagation();
      if (e.repeat) return; // a held key fires once
      if ("1" <= key && key <= "6") {
        const boxes = document.querySelectorAll("#sp-tags input[type=checkbox]");
        const box = boxes[Number(key) - 1];
        if (box) box.click();
        return;
      }
      if (mode === "pick") {
        const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -columns(), ArrowDown: columns() }[key];
        if (step !== undefined) {
          select(sp.selected < 0 ? 0 : sp.selected + step);
          return;
        }
        if (key === "Enter" || key === "a") {
          const chosen = candidates()[sp.selected];
          if (chosen) pick(chosen.dataset.file);
          else press("sp-accept"); // the server answers "choose a candidate first"
          return;
        }
      }
      if (key === "Enter") return;
      press(ACTIONS[key]);
    },
    true
  );

  // Pick mode: clicking a candidate pairs it with the anchor.
  document.addEventListener("click", (e) => {
    const figure = e.target.closest ? e.target.closest("#sp-view .sp-cand") : null;
    if (!figure || e.target.closest("a")) return;
    e.preventDefault();
    pick(figure.dataset.file);
  });
})();
