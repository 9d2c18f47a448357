// Live updates of the hub dashboard: the server sends the status JSON as server-sent events; this writes
// each figure into its cell with textContent only (never markup built from data). EventSource reconnects
// by itself when the stream breaks.
"use strict";
(function () {
  const table = document.getElementById("members");
  if (!table || !window.EventSource) { return; }
  const live = document.getElementById("live");
  const pad = (n) => String(n).padStart(2, "0");
  const time = (iso) => {
    if (!iso) { return "–"; }
    const d = new Date(iso);
    return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
      `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  };
  const num = (v) => (v === null || v === undefined ? "–" : String(Math.round(v)));
  // Times go in a <time dir="ltr">, so that they read left to right in the Arabic page too.
  const showTime = (cell, value, empty) => {
    if (!value) { if (cell.textContent !== empty) { cell.textContent = empty; } return; }
    let el = cell.querySelector("time");
    if (!el) { el = document.createElement("time"); el.dir = "ltr"; cell.replaceChildren(el); }
    el.dateTime = value;
    el.textContent = time(value);
  };
  const show = (cell, field, value) => {
    if (cell.dataset.format === "time") {
      showTime(cell, value, field === "key_expires_at" ? table.dataset.noExpiry : "–");
      return;
    }
    const text = num(value);
    const link = cell.querySelector("a");
    if (link && value) { link.textContent = text; } else if (cell.textContent !== text) { cell.textContent = text; }
  };
  const apply = (snap) => {
    document.querySelectorAll("[data-summary]").forEach((el) => {
      const key = el.dataset.summary;
      if (el.dataset.format === "time") { showTime(el, snap[key], "–"); } else { el.textContent = num(snap[key]); }
    });
    for (const m of snap.members) {
      const row = table.querySelector(`tr[data-member="${CSS.escape(m.code)}"]`);
      if (!row) { continue; }
      row.classList.toggle("silent", Boolean(m.silent));
      row.querySelectorAll("[data-field]").forEach((cell) => {
        const field = cell.dataset.field;
        if (field === "silent") { cell.hidden = !m.silent; } else { show(cell, field, m[field]); }
      });
    }
  };
  const source = new EventSource(table.dataset.events);
  source.addEventListener("status", (e) => { apply(JSON.parse(e.data)); });
  source.addEventListener("open", () => { if (live) { live.hidden = false; } });
  source.addEventListener("error", () => { if (live) { live.hidden = true; } });
})();
