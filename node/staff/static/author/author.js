// Authoring pages: small enhancements only; every page works without them (no build step).
// 1. Language tabs: each multilingual field shows one language at a time (ARIA tabs), the same language in
//    every field. A language whose input has an error is marked; the page opens on it.
// 2. "Add another" in a repeated group or list adds a blank item in place (no round trip), numbered like
//    the server numbers them, so the post reads the same with or without this script.
// 3. The time-zone picker (a select grouped by country) gets a filter: words of a country, a city or the zone's
//    name (Asia/Qatar) keep the matching zones; one match left is chosen.
// 4. An import still running ([data-follow]) has its progress brought up to date every second in place (a live
//    region, no page refresh), and the page is loaded again once the report is there.
(function () {
  "use strict";
  var tabsets = [];
  var current = null;
  var counter = 0;

  function select(lang, focusSet) {
    current = lang;
    tabsets.forEach(function (set) {
      var has = set.tabs.some(function (t) { return t.dataset.lang === lang; });
      var chosen = has ? lang : set.tabs[0].dataset.lang;
      set.tabs.forEach(function (tab, i) {
        var on = tab.dataset.lang === chosen;
        tab.setAttribute("aria-selected", on ? "true" : "false");
        tab.tabIndex = on ? 0 : -1;
        set.panels[i].hidden = !on;
        if (on && focusSet === set) { tab.focus(); }
      });
    });
  }

  function enhanceTabs(root) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-langmap]:not([data-tabs])"), function (map) {
      var panels = Array.prototype.slice.call(map.querySelectorAll(".lang-panel"));
      if (panels.length < 2) { return; }
      var m = counter++;
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
        panel.id = "panel-" + m + "-" + i;
        tab.setAttribute("aria-controls", panel.id);
        panel.setAttribute("role", "tabpanel");
        panel.setAttribute("aria-labelledby", tab.id);
        if (input && input.getAttribute("aria-invalid") === "true") { tab.classList.add("tab-error"); }
        tab.addEventListener("click", function () { select(tab.dataset.lang); });
        tab.addEventListener("keydown", function (e) {
          var n = set.tabs.length, rtl = getComputedStyle(list).direction === "rtl";
          var step = e.key === "ArrowRight" ? (rtl ? -1 : 1) : e.key === "ArrowLeft" ? (rtl ? 1 : -1) : 0;
          if (!step) { return; }
          e.preventDefault();
          select(set.tabs[(i + step + n) % n].dataset.lang, set);
        });
        set.tabs.push(tab);
        list.appendChild(tab);
      });
      panels[0].parentNode.insertBefore(list, panels[0]);
      map.setAttribute("data-tabs", "");
      tabsets.push(set);
    });
  }

  // -- repeated groups ------------------------------------------------------------------------------------

  function idOf(path) { return "f-" + path.replace(/\./g, "--").replace(/[^A-Za-z0-9_-]/g, "-"); }

  function renumber(node, oldPath, newPath) {
    var oldId = idOf(oldPath), newId = idOf(newPath);
    function swap(value, old, neu, sep) {
      if (value === old) { return neu; }
      return value.indexOf(old + sep) === 0 ? neu + value.slice(old.length) : value;
    }
    [node].concat(Array.prototype.slice.call(node.querySelectorAll("*"))).forEach(function (el) {
      if (el.name) { el.name = swap(el.name, oldPath, newPath, "."); }
      ["id", "for", "aria-describedby"].forEach(function (attr) {
        var v = el.getAttribute(attr);
        if (v) { el.setAttribute(attr, v.split(" ").map(function (x) { return swap(x, oldId, newId, "-"); }).join(" ")); }
      });
    });
  }

  function blank(node) {
    Array.prototype.forEach.call(node.querySelectorAll("input, textarea, select"), function (el) {
      if (el.type === "checkbox" || el.type === "radio") { el.checked = false; }
      else if (el.tagName === "SELECT") { el.selectedIndex = -1; if (!el.multiple) { el.selectedIndex = 0; } }
      else { el.value = ""; }
      el.removeAttribute("aria-invalid");
    });
    Array.prototype.forEach.call(node.querySelectorAll(".field-error, .remove, [role=tablist]"), function (el) {
      el.parentNode.removeChild(el);
    });
    Array.prototype.forEach.call(node.querySelectorAll("[data-tabs]"), function (el) { el.removeAttribute("data-tabs"); });
    Array.prototype.forEach.call(node.querySelectorAll(".lang-panel"), function (el) { el.hidden = false; });
  }

  function relabel(node, from, to) {
    Array.prototype.forEach.call(node.querySelectorAll("legend, label"), function (el) {
      if (el.firstChild && el.firstChild.nodeType === 3) {
        el.firstChild.nodeValue = el.firstChild.nodeValue.replace(new RegExp("(^|\\s)" + from + "(?=\\s|$| )"), "$1" + to);
      }
    });
  }

  function enhanceRepeats(root) {
    Array.prototype.forEach.call(root.querySelectorAll("[data-repeat]"), function (group) {
      var button = group.querySelector(":scope > .add-row button");
      if (!button) { return; }
      var items = group.querySelectorAll(":scope > [data-item]");
      var template = items[items.length - 1].cloneNode(true);  // the blank one, before tabs are added
      blank(template);
      button.addEventListener("click", function (e) {
        e.preventDefault();
        var all = group.querySelectorAll(":scope > [data-item]");
        var last = all[all.length - 1];
        var n = Number(last.dataset.item) + 1;
        var item = template.cloneNode(true);
        var base = group.dataset.repeat;
        renumber(item, base + "." + template.dataset.item, base + "." + n);
        relabel(item, String(Number(template.dataset.item) + 1), String(n + 1));
        item.dataset.item = String(n);
        last.parentNode.insertBefore(item, last.nextSibling);
        enhanceTabs(item);
        if (current) { select(current); }
        var first = item.querySelector("input:not([type=hidden]):not([type=checkbox]), select, textarea");
        if (first) { first.focus(); }
      });
    });
  }

  // -- the time-zone filter ---------------------------------------------------------------------------------

  function fold(text) {
    return text.toLowerCase().normalize("NFD").replace(/[\u0300-\u036f\u064b-\u065f\u0640]/g, "")
      .replace(/[_/]/g, " ").replace(/[أإآ]/g, "ا").replace(/ى/g, "ي").replace(/ة/g, "ه");
  }

  function enhanceZones(root) {
    Array.prototype.forEach.call(root.querySelectorAll("select[data-filter]"), function (select) {
      var wrap = document.createElement("p");
      wrap.className = "zone-filter";
      var label = document.createElement("label");
      var input = document.createElement("input");
      var status = document.createElement("span");
      input.type = "search";
      input.id = select.id + "-filter";
      input.setAttribute("autocomplete", "off");
      input.setAttribute("aria-controls", select.id);
      label.htmlFor = input.id;
      label.textContent = select.dataset.filter;
      status.className = "help";
      status.setAttribute("aria-live", "polite");
      wrap.appendChild(label);
      wrap.appendChild(input);
      wrap.appendChild(status);
      select.parentNode.insertBefore(wrap, select);
      input.addEventListener("input", function () {
        var words = fold(input.value).split(/\s+/).filter(Boolean);
        var shown = [];
        Array.prototype.forEach.call(select.querySelectorAll("optgroup"), function (group) {
          var any = false;
          Array.prototype.forEach.call(group.querySelectorAll("option"), function (option) {
            var text = fold(group.label + " " + option.textContent + " " + option.value);
            var on = words.every(function (w) { return text.indexOf(w) >= 0; });
            option.hidden = !on;
            if (on) { any = true; shown.push(option); }
          });
          group.hidden = !any;
        });
        status.textContent = words.length && !shown.length ? select.dataset.none : "";
        if (words.length && shown.length === 1) { select.value = shown[0].value; }
      });
    });
  }

  function followImport() {
    var status = document.querySelector("[data-follow]");
    if (!status) { return; }
    var timer = setInterval(function () {
      fetch(location.pathname, { credentials: "same-origin", cache: "no-store" }).then(function (r) {
        return r.ok ? r.text() : null;
      }).then(function (html) {
        if (html === null) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").querySelector("[data-follow]");
        if (!fresh) { clearInterval(timer); location.reload(); return; }  // finished: the report is on the page
        var bar = status.querySelector("progress"), now = fresh.querySelector("progress");
        if (bar && now) { bar.max = now.max; bar.value = now.value; bar.textContent = now.textContent; }
        var text = fresh.lastChild && fresh.lastChild.textContent;
        if (status.lastChild && text && status.lastChild.textContent !== text) { status.lastChild.textContent = text; }
      }).catch(function () { /* the node is busy or away: try again at the next tick */ });
    }, 1000);
  }

  enhanceRepeats(document);
  enhanceTabs(document);
  enhanceZones(document);
  followImport();
  var bad = document.querySelector(".lang-panel [aria-invalid='true']");
  var start = bad ? bad.closest(".lang-panel").dataset.lang : (tabsets.length ? tabsets[0].tabs[0].dataset.lang : null);
  if (start) { select(start); }
  // A link from the error summary to an input in a hidden panel opens its tab first.
  document.addEventListener("click", function (e) {
    var a = e.target.closest && e.target.closest(".error-summary a");
    if (!a) { return; }
    var target = document.getElementById(a.getAttribute("href").slice(1));
    if (!target) { return; }
    var panel = target.closest(".lang-panel") || target.querySelector(".lang-panel [aria-invalid='true']");
    if (panel) { select((panel.closest(".lang-panel") || panel).dataset.lang); }
  });
})();
