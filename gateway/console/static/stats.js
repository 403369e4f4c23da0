// The console's charts (跨省通办 statistics and the half-year report), drawn with the bundled
// Chart.js from the JSON block the server put in the page.
"use strict";
(function () {
  const block = document.getElementById("stats-data");
  if (!block || typeof Chart === "undefined") return;
  const data = JSON.parse(block.textContent);
  const palette = ["#1f6fb2", "#c0392b", "#27ae60", "#e67e22", "#8e44ad", "#16a085",
                   "#7f8c8d", "#d35400", "#2c3e50", "#b7950b"];
  Chart.defaults.font.family = '"Noto Sans CJK SC", "Noto Sans SC", sans-serif';
  Chart.defaults.animation = false;

  function draw(id, series, groups, stacked) {
    const canvas = document.getElementById(id);
    if (!canvas || !series) return;
    const names = Object.keys(series[groups]);
    new Chart(canvas, {
      type: "bar",
      data: {
        labels: series.labels,
        datasets: names.map((name, i) => ({
          label: name, data: series[groups][name], backgroundColor: palette[i % palette.length],
        })),
      },
      options: {
        responsive: true, maintainAspectRatio: false,
        scales: { x: { stacked }, y: { stacked, beginAtZero: true, ticks: { precision: 0 } } },
        plugins: { legend: { position: "bottom" } },
      },
    });
    canvas.dataset.drawn = "true";
  }
  draw("chart-daily-outcome", data.daily, "outcomes", true);
  draw("chart-daily-partner", data.daily, "partners", true);
  draw("chart-monthly-outcome", data.monthly, "outcomes", true);
  const print = document.getElementById("print");
  if (print) print.addEventListener("click", () => window.print());
})();
