// Authoring pages: a small enhancement only; every page works without it.
// Language tabs: each multilingual field shows one language at a time (ARIA tabs), the same language in
// every field, remembered while the page is open. A language whose input has an error is marked.
(function () {
  "use strict";
  var maps = Array.prototype.slice.call(document.querySelectorAll("[data-langmap]"));
  if (!maps.length) { return; }
  var tabsets = [];

  function select(lang, focus) {
    tabsets.forEach(function (set) {
      var has = set.tabs.some(function (t) { return t.dataset.lang === lang; });
      var chosen = has ? lang : set.tabs[0].dataset.lang;
      set.tabs.forEach(function (tab, i) {
        var on = tab.dataset.lang === chosen;
        tab.setAttribute("aria-selected", on ? "true" : "false");
        tab.tabIndex = on ? 0 : -1;
        set.panels[i].hidden = !on;
        if (on && focus === set) { tab.focus(); }
      });
    });
  }

  maps.forEach(function (map, m) {
    var panels = Array.prototype.slice.call(map.querySelectorAll(".lang-panel"));
    if (panels.length < 2) { return; }
    var list = document.createElement("div");
    list.setAttribute("role", "tablist");
    var legend = map.querySelector("legend");
    list.setAttribute("aria-label", legend ? legend.textContent.trim() : "");
    var set = { tabs: [], panels: panels };
    panels.forEach(function (panel, i) {
      var input = panel.querySelector("input, textarea");
      var label = panel.querySelector("label span");
      var tab = document.createElement("button");
      tab.type = "button";
      tab.setAttribute("role", "tab");
      tab.id = "tab-" + m + "-" + i;
      tab.dataset.lang = panel.dataset.lang;
      tab.textContent = label ? label.textContent : panel.dataset.lang;
      tab.setAttribute("aria-controls", panel.id = panel.id || ("panel-" + m + "-" + i));
      panel.setAttribute("role", "tabpanel");
      panel.setAttribute("aria-labelledby", tab.id);
      if (input && input.getAttribute("aria-invalid") === "true") { tab.classList.add("tab-error"); }
      tab.addEventListener("click", function () { select(tab.dataset.lang); });
      tab.addEventListener("keydown", function (e) {
        var k = e.key, n = set.tabs.length, rtl = getComputedStyle(list).direction === "rtl";
        var step = k === "ArrowRight" ? (rtl ? -1 : 1) : k === "ArrowLeft" ? (rtl ? 1 : -1) : 0;
        if (!step) { return; }
        e.preventDefault();
        select(set.tabs[(i + step + n) % n].dataset.lang, set);
      });
      set.tabs.push(tab);
      list.appendChild(tab);
    });
    var firstPanel = panels[0];
    firstPanel.parentNode.insertBefore(list, firstPanel);
    map.setAttribute("data-tabs", "");
    tabsets.push(set);
  });

  // Start on a language with an error, if any, so the message is in view.
  var bad = document.querySelector(".lang-panel [aria-invalid='true']");
  var start = bad ? bad.closest(".lang-panel").dataset.lang : (tabsets.length ? tabsets[0].tabs[0].dataset.lang : null);
  if (start) { select(start); }
  // A link from the error summary to an input in a hidden panel opens its tab first.
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest(".error-summary a");
    if (!a) { return; }
    var target = document.getElementById(a.getAttribute("href").slice(1));
    var panel = target && (target.closest(".lang-panel") || target.querySelector(".lang-panel [aria-invalid='true']"));
    if (panel) {
      var p = panel.classList.contains("lang-panel") ? panel : panel.closest(".lang-panel");
      select(p.dataset.lang);
    }
  });
})();
