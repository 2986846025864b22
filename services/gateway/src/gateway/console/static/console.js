// The ops console's only script: charts from the page's JSON, countdowns to SLA breaches.
// No inline scripts anywhere (the console's Content-Security-Policy forbids them).
(function () {
  "use strict";
  var palette = ["#1f5fa8", "#c2571a", "#2e7d32", "#8e24aa", "#b00020", "#00796b", "#5d4037"];

  function bar(labels, values, label, horizontal) {
    return {
      type: "bar",
      data: { labels: labels, datasets: [{ label: label, data: values, backgroundColor: palette }] },
      options: { indexAxis: horizontal ? "y" : "x", plugins: { legend: { display: false } },
                 maintainAspectRatio: false, animation: false }
    };
  }

  var builders = {
    "chart-tiers": function (d) { return bar(d.tiers.labels, d.tiers.values, "members"); },
    "chart-value": function (d) {
      return { type: "doughnut",
               data: { labels: d.value_tiers.labels,
                       datasets: [{ data: d.value_tiers.values, backgroundColor: palette }] },
               options: { maintainAspectRatio: false, animation: false } };
    },
    "chart-lifecycle": function (d) {
      return bar(d.lifecycle.labels, d.lifecycle.values, "members", true);
    },
    "chart-sla": function (d) {
      return { type: "bar",
               data: { labels: d.sla.labels, datasets: [
                 { label: "this period", data: d.sla.current, backgroundColor: palette[0] },
                 { label: "previous", data: d.sla.previous, backgroundColor: "#9aa5b1" }] },
               options: { maintainAspectRatio: false, animation: false,
                          scales: { y: { min: 0, max: 100 } } } };
    },
    "chart-pareto": function (d) {
      return { type: "bar",
               data: { labels: d.pareto.labels, datasets: [
                 { label: "complaints", data: d.pareto.counts, backgroundColor: palette[1],
                   yAxisID: "y", order: 2 },
                 { label: "cumulative %", data: d.pareto.cumulative, type: "line",
                   borderColor: palette[0], yAxisID: "share", order: 1 }] },
               options: { maintainAspectRatio: false, animation: false, scales: {
                 y: { beginAtZero: true, position: "left" },
                 share: { min: 0, max: 100, position: "right", grid: { drawOnChartArea: false } } } } };
    },
    "chart-time": function (d) {
      return { type: "line",
               data: { labels: d.time.labels, datasets: [
                 { label: "NPS", data: d.time.nps, borderColor: palette[0], yAxisID: "nps", spanGaps: true },
                 { label: "CSAT (1-5)", data: d.time.csat, borderColor: palette[1], yAxisID: "csat", spanGaps: true },
                 { label: "SLA compliance %", data: d.time.sla, borderColor: palette[2], yAxisID: "nps", spanGaps: true }] },
               options: { maintainAspectRatio: false, animation: false, scales: {
                 nps: { min: -100, max: 100, position: "left" },
                 csat: { min: 1, max: 5, position: "right", grid: { drawOnChartArea: false } } } } };
    }
  };

  function drawCharts(root) {
    var source = root.querySelector("#chart-data");
    if (!source || typeof Chart === "undefined") { return; }
    var data = JSON.parse(source.textContent);
    Object.keys(builders).forEach(function (id) {
      var canvas = root.querySelector("#" + id);
      if (!canvas) { return; }
      var existing = Chart.getChart(canvas);
      if (existing) { existing.destroy(); }
      new Chart(canvas, builders[id](data));
    });
  }

  function left(ms) {
    var late = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
    var text = (d ? d + "d " : "") + (d || h ? h + "h " : "") + m + "m " + (s % 60) + "s";
    return late ? "breached " + text + " ago" : "in " + text;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var ms = Date.parse(el.getAttribute("data-due")) - now;
      el.textContent = left(ms);
      el.classList.toggle("late", ms < 0);
    });
  }

  function init() {
    drawCharts(document);
    tick();
  }

  document.addEventListener("DOMContentLoaded", init);
  document.addEventListener("htmx:load", function (e) { drawCharts(document); tick(); });
  setInterval(tick, 1000);
})();
