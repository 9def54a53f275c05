// Live pages: an element with data-live is fetched again (with htmx) when the server's
// event stream says something it shows changed. data-event names the event to follow;
// data-watch, if set, is the one message id the element shows.
(function () {
  "use strict";
  function follow() {
    var parts = document.querySelectorAll("[data-live]");
    if (!parts.length || !window.EventSource) { return; }
    var source = new EventSource("/events");
    parts.forEach(function (part) {
      var timer = null;
      part.dataset.event.split(" ").forEach(function (name) {
        source.addEventListener(name, function (event) {
          var ids = (JSON.parse(event.data).ids || []);
          if (part.dataset.watch && ids.indexOf(part.dataset.watch) < 0) { return; }
          clearTimeout(timer);  // a burst of changes: one fetch
          timer = setTimeout(function () {
            htmx.ajax("GET", part.dataset.live, {target: part, swap: "innerHTML"});
          }, 100);
        });
      });
    });
    source.addEventListener("open", function () { document.body.dataset.live = "on"; });
    source.addEventListener("error", function () { document.body.dataset.live = "off"; });
    window.addEventListener("pagehide", function () { source.close(); });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", follow);
  } else {
    follow();
  }
})();
