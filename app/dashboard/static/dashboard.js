// banditq dashboard: refresh numbers and plots in place (no reload, no third-party code).
// Values are written with textContent only: nothing from the server is parsed as HTML.
(function () {
  "use strict";
  var body = document.body;
  var every = 1000 * parseFloat(body.dataset.refresh || "2");
  var rounds = 0;

  function done() {
    rounds += 1;
    body.dataset.refreshes = String(rounds);
  }

  function get(url, then) {
    fetch(url, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(r.status); } return r.json(); })
      .then(then)
      .catch(function (e) { body.dataset.error = String(e); })
      .finally(done);
  }

  function setCells(root, values) {
    root.querySelectorAll("td[data-key]").forEach(function (td) {
      var v = values[td.dataset.key];
      if (v !== undefined && td.textContent !== v) { td.textContent = v; }
    });
  }

  function refreshIndex() {
    get("/api/campaigns?display=1", function (rows) {
      var tbody = document.querySelector("#campaigns tbody");
      rows.forEach(function (r) {
        var tr = null;
        tbody.querySelectorAll("tr[data-campaign]").forEach(function (row) {
          if (row.dataset.campaign === r.campaign) { tr = row; }
        });
        if (tr === null) {
          tr = document.createElement("tr");
          tr.dataset.campaign = r.campaign;
          var cols = ["kind", "policy", "status", "instances", "succeeded", "failed",
                      "progress", "trials_per_s", "last_activity"];
          var td = document.createElement("td");
          var a = document.createElement("a");
          a.href = "/c/" + encodeURIComponent(r.campaign);
          a.textContent = r.campaign;
          td.appendChild(a);
          tr.appendChild(td);
          cols.forEach(function (c) {
            var cell = document.createElement("td");
            cell.dataset.key = c;
            tr.appendChild(cell);
          });
          tbody.insertBefore(tr, tbody.firstChild);
        }
        setCells(tr, r);
      });
    });
  }

  function refreshCampaign() {
    var name = body.dataset.campaign;
    get("/api/c/" + encodeURIComponent(name) + "/summary?display=1", function (s) {
      var version = s.trials + "/" + s.succeeded + "/" + s.failed + "/" + s.last_activity;
      setCells(document.getElementById("summary"), s);
      if (body.dataset.version !== version) {
        if (body.dataset.version !== undefined) {
          document.querySelectorAll("img[data-plot]").forEach(function (img) {
            img.src = img.src.replace(/\?.*$/, "") + "?v=" + encodeURIComponent(version);
          });
          refreshErrors(name);
        }
        body.dataset.version = version;
      }
    });
  }

  function refreshErrors(name) {
    get("/api/c/" + encodeURIComponent(name) + "/errors", function (rows) {
      var tbody = document.querySelector("#errors tbody");
      var cols = ["at", "instance", "arm", "worker", "error"];
      while (tbody.firstChild) { tbody.removeChild(tbody.firstChild); }
      rows.forEach(function (r) {
        var tr = document.createElement("tr");
        cols.forEach(function (c) {
          var td = document.createElement("td");
          td.textContent = r[c];
          tr.appendChild(td);
        });
        tbody.appendChild(tr);
      });
    });
  }

  var tick = body.dataset.page === "campaign" ? refreshCampaign : refreshIndex;
  window.setInterval(tick, every);
  tick();
})();
