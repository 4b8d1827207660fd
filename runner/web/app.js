// app.js - the dashboard's only script: optional auto-refresh, paused while the tab is
// hidden. Every page works without it.
(function () {
  "use strict";
  var PERIOD_MS = 5000;
  var box = document.getElementById("autorefresh");
  if (!box || !window.fetch || !window.DOMParser) return;
  box.parentNode.hidden = false;
  var key = "runner.autorefresh";
  try { box.checked = localStorage.getItem(key) === "1"; } catch (e) { /* private mode */ }
  box.addEventListener("change", function () {
    try { localStorage.setItem(key, box.checked ? "1" : "0"); } catch (e) { /* ignore */ }
  });
  var busy = false;
  function refresh() {
    if (!box.checked || busy || document.visibilityState !== "visible") return;
    // a form being filled in is not replaced under the user's hands
    var active = document.activeElement;
    if (active && /^(INPUT|SELECT|TEXTAREA)$/.test(active.tagName) && active !== box) return;
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main"), old = document.querySelector("main");
        var foot = doc.querySelector("footer"), oldFoot = document.querySelector("footer");
        if (fresh && old) old.replaceWith(fresh);
        if (foot && oldFoot) oldFoot.replaceWith(foot);
      })
      .catch(function () { /* the next turn tries again */ })
      .then(function () { busy = false; });
  }
  setInterval(refresh, PERIOD_MS);
  document.addEventListener("visibilitychange", refresh);
})();
