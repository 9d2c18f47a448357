// Keeps the node status page's figures current: polls /status/document (the full status, for the signed-in
// operator; /api/v1/status shows outsiders only its public part) every 5 s and writes each figure into
// its element with textContent only. Lists (refusals, alarms) change rarely: the page's own reload shows them.
"use strict";
(function () {
  const root = document.getElementById("hub");
  if (!root) { return; }
  const labels = root.dataset;
  // Times and numbers in the page's language (Intl's CLDR data; Latin digits as the server's Babel writes them).
  const locale = `${document.documentElement.lang || "en"}-u-nu-latn`;
  const dates = new Intl.DateTimeFormat(locale, { dateStyle: "medium", timeStyle: "medium", timeZone: "UTC" });
  const numbers = new Intl.NumberFormat(locale);
  const time = (iso) => (iso ? `${dates.format(new Date(iso))} (UTC)` : "–");
  const num = (v) => (v === null || v === undefined ? "–" : numbers.format(v));
  const set = (id, text) => { const el = document.getElementById(id); if (el && el.textContent !== text) { el.textContent = text; } };
  const tick = async () => {
    try {
      const r = await fetch("/status/document", { headers: { Accept: "application/json" }, cache: "no-store", credentials: "same-origin" });
      if (!r.ok) { return; }
      const s = await r.json();
      const reachable = s.hub.reachable;
      set("reachable", reachable === true ? labels.yes : reachable === false ? labels.no : labels.unknown);
      set("last-push", time(s.hub.last_push_at));
      set("last-pull", time(s.hub.last_pull_at));
      set("cursor", num(s.cursor));
      set("hub-log-size", num(s.hub.log_size));
      set("lag", s.hub.log_size === null ? "–" : num(Math.max(0, s.hub.log_size - s.cursor)));
      for (const state of ["pending", "rejected", "accepted"]) { set(`outbox-${state}`, num(s.outbox[state])); }
      set("updated", time(s.time));
    } catch (e) { /* the node itself is unreachable: keep the last figures */ }
  };
  setInterval(tick, 5000);
})();
