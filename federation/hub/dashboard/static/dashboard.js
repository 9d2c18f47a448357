// Live updates of the hub dashboard: the server sends the status JSON as server-sent events; this writes
// each figure into its cell with textContent only (never markup built from data). EventSource reconnects
// by itself when the stream breaks.
"use strict";
(function () {
  const table = document.getElementById("members");
  if (!table || !window.EventSource) { return; }
  const live = document.getElementById("live");
  // The page's language (CLDR data in the browser's Intl, Latin digits as the server's Babel writes them).
  const locale = `${document.documentElement.lang || "en"}-u-nu-latn`;
  const dates = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium", timeZone: "UTC" });
  const numbers = new Intl.NumberFormat(locale, { maximumFractionDigits: 0 });
  const time = (iso) => (iso ? `${dates.format(new Date(iso))} (UTC)` : "–");
  const num = (v) => (v === null || v === undefined ? "–" : numbers.format(Math.round(v)));
  // A duration in the unit that matters, in words with the language's plural forms ("3 minutes", "3 دقائق").
  const duration = (s) => {
    if (s === null || s === undefined) { return "–"; }
    const [unit, n] = s >= 5400 ? ["hour", s / 3600] : s >= 90 ? ["minute", s / 60] : ["second", s];
    return new Intl.NumberFormat(locale, { style: "unit", unit, unitDisplay: "long", maximumFractionDigits: 0 })
      .format(Math.round(n));
  };
  const showTime = (cell, value, empty) => {
    if (!value) { if (cell.textContent !== empty) { cell.textContent = empty; } return; }
    let el = cell.querySelector("time");
    if (!el) { el = document.createElement("time"); cell.replaceChildren(el); }
    el.dateTime = value;
    el.textContent = time(value);
  };
  const show = (cell, field, value) => {
    if (cell.dataset.format === "time") {
      showTime(cell, value, field === "key_expires_at" ? table.dataset.noExpiry : "–");
      return;
    }
    const text = cell.dataset.format === "duration" ? duration(value) : num(value);
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
