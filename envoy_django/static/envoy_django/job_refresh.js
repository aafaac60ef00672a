// The job page of an unfinished job keeps itself current: every two seconds
// it asks the job's status endpoint, and when the job has moved on it fetches
// the page again and swaps the content in, without reloading the page.
// While a model call streams, it shows the text so far, polling faster.
// It stops once the job is finished. No dependencies, no inline script.
(function () {
  "use strict";
  var script = document.currentScript;
  var statusUrl = script && script.dataset.statusUrl;
  var seen = script && script.dataset.updatedAt;
  if (!statusUrl) { return; }
  var every = 2000;

  function swapContent() {
    return fetch(window.location.href, {credentials: "same-origin"})
      .then(function (response) { return response.ok ? response.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("content-main");
        var current = document.getElementById("content-main");
        if (fresh && current) { current.replaceWith(fresh); }
      });
  }

  // A streaming model call's text so far: shown as it grows, hidden once the call has ended.
  function showStream(text) {
    var box = document.getElementById("envoy-stream");
    if (!box) { return; }
    box.hidden = !text;
    box.querySelector(".envoy-stream__text").textContent = text || "";
  }

  function poll() {
    fetch(statusUrl, {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (job) {
        if (!job) { return setTimeout(poll, every * 5); }
        showStream(job.stream);
        var moved = job.updated_at !== seen;
        seen = job.updated_at;
        var next = moved ? swapContent() : Promise.resolve();
        return next.then(function () {
          document.body.dataset.envoyJobStatus = job.status;
          if (!job.finished) { setTimeout(poll, job.stream ? every / 4 : every); }
        });
      })
      .catch(function () { setTimeout(poll, every * 5); });
  }

  setTimeout(poll, every);
}());
