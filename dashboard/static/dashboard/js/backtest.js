// Backtest run page: polls the run until it is done (progress bar), then draws equity against buy-and-hold, the
// drawdown, and the candles with a marker at every fill; the metrics and the trade list beside them.
import { COLORS, api, chartDefaults, config, el, fmtPct, fmtPrice, fmtTime, num } from "./common.js";

const runId = config.run.id;
const $ = (id) => document.getElementById(id);
const Chart = chartDefaults();
const TIME_FORMATS = { hour: "MMM d HH:mm", day: "MMM d", week: "MMM d", month: "MMM yyyy", quarter: "MMM yyyy", year: "yyyy" };
const METRICS = [
  ["total_return", "Total return"], ["buy_and_hold_return", "Buy & hold"], ["cagr", "CAGR"],
  ["sharpe", "Sharpe"], ["sortino", "Sortino"], ["calmar", "Calmar"], ["max_drawdown", "Max drawdown"],
  ["trades", "Trades"], ["win_rate", "Win rate"], ["profit_factor", "Profit factor"], ["exposure", "Exposure"],
  ["fees", "Fees"], ["final_equity", "Final equity"],
];

function fmtMetric(name, value) {
  const v = num(value);
  if (value === null || !Number.isFinite(v)) return "—";
  if (["total_return", "buy_and_hold_return", "cagr"].includes(name)) return fmtPct(v * 100);
  if (["max_drawdown", "win_rate", "exposure"].includes(name)) return `${(v * 100).toFixed(2)}%`;
  if (["final_equity", "fees"].includes(name)) return v.toLocaleString("en-US", { maximumFractionDigits: 2 });
  if (name === "trades") return String(v);
  return v.toFixed(3);
}

function showMetrics(metrics) {
  const box = $("metrics");
  box.replaceChildren();
  for (const [key, label] of METRICS) {
    if (!(key in metrics)) continue;
    const v = num(metrics[key]);
    const tone = key.endsWith("return") || key === "cagr" ? (v >= 0 ? "good" : "bad") : "";
    box.append(el("div", { class: `card kpi ${tone}`, "data-metric": key },
      el("div", { class: "k", text: label }), el("div", { class: "v", text: fmtMetric(key, metrics[key]) })));
  }
}

function showStatus(run) {
  const badge = $("run-status");
  badge.textContent = run.status;
  badge.className = `badge status-${run.status}`;
  $("progress-card").dataset.status = run.status;
  $("progress-bar").style.width = `${Math.round(run.progress * 100)}%`;
  $("progress-pct").textContent = run.status === "failed" ? "" : `${Math.round(run.progress * 100)}%`;
  $("progress-title").textContent = run.status === "failed" ? "Failed" : run.status === "pending" ? "Queued…" : "Running…";
  if (run.error) {
    $("run-error").hidden = false;
    $("run-error").textContent = run.error;
  }
  if (run.bars !== null) $("run-bars").textContent = run.bars.toLocaleString("en-US");
}

const timeScale = (display = true) => ({
  type: "time", display, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 30 },
  time: { tooltipFormat: "yyyy-MM-dd HH:mm", displayFormats: TIME_FORMATS },
});

function line(label, data, color, extra = {}) {
  return { type: "line", label, data: data.map(([x, y]) => ({ x, y })), borderColor: color, backgroundColor: color,
           borderWidth: 1.5, pointRadius: 0, tension: 0, ...extra };
}

function drawEquity(chart) {
  const equityChart = new Chart($("equity-chart"), {
    data: { datasets: [line("Strategy", chart.equity, COLORS.vwap), line("Buy & hold", chart.buy_and_hold, COLORS.sma[0])] },
    options: {
      parsing: false, interaction: { mode: "index", intersect: false },
      scales: { x: timeScale(), y: { type: "logarithmic", position: "right", ticks: { callback: (v) => fmtPrice(v) } } },
      plugins: { legend: { display: true, position: "top", align: "start", labels: { boxWidth: 10, boxHeight: 2 } },
                 tooltip: { callbacks: { label: (ctx) => `${ctx.dataset.label} ${fmtPrice(ctx.raw.y)}` } } },
    },
  });
  $("log-scale").addEventListener("change", (event) => {
    equityChart.options.scales.y.type = event.target.checked ? "logarithmic" : "linear";
    equityChart.update();
  });
  new Chart($("drawdown-chart"), {
    data: { datasets: [line("Drawdown", chart.drawdown.map(([t, d]) => [t, -d * 100]), COLORS.down,
                            { fill: "origin", backgroundColor: "rgba(234, 57, 67, 0.25)" })] },
    options: {
      parsing: false, interaction: { mode: "index", intersect: false },
      scales: { x: timeScale(), y: { position: "right", max: 0, ticks: { callback: (v) => `${v}%` } } },
      plugins: { tooltip: { callbacks: { label: (ctx) => `Drawdown ${ctx.raw.y.toFixed(2)}%` } } },
    },
  });
}

function drawTrades(chart) {
  const entries = chart.trades.map((t) => ({ x: t.entry_time, y: t.entry_price, trade: t }));
  const exits = chart.trades.map((t) => ({ x: t.exit_time, y: t.exit_price, trade: t }));
  // Markers in colours the candles do not use, outlined, so they stand out; smaller when there are many, so the
  // candles stay readable on a long run.
  const count = chart.trades.length;
  const radius = count > 120 ? 3.5 : count > 40 ? 5 : 7;
  const markers = (label, data, color, rotation) => ({
    type: "scatter", label, data, pointStyle: "triangle", rotation, pointRadius: radius, pointHoverRadius: radius + 3,
    backgroundColor: color, borderColor: "#ffffff", borderWidth: count > 120 ? 0.5 : 1.5, order: -1,
  });
  new Chart($("trade-chart"), {
    type: "candlestick",
    data: {
      datasets: [
        { type: "candlestick", label: "Candles", data: chart.candles.map(([x, o, h, l, c]) => ({ x, o, h, l, c })),
          backgroundColors: { up: COLORS.up, down: COLORS.down, unchanged: "#8a94a8" },
          borderColors: { up: COLORS.up, down: COLORS.down, unchanged: "#8a94a8" } },
        markers("Buy (entry)", entries, COLORS.sma[1], 0),
        markers("Sell (exit)", exits, COLORS.vwap, 180),
      ],
    },
    options: {
      parsing: false, interaction: { mode: "nearest", intersect: true },
      scales: { x: { ...timeScale(), type: "timeseries", offset: true }, y: { type: "logarithmic", position: "right", ticks: { callback: (v) => fmtPrice(v) } } },
      plugins: {
        legend: { display: true, position: "top", align: "start", labels: { boxWidth: 10, boxHeight: 6 } },
        tooltip: { callbacks: { label(ctx) {
          const r = ctx.raw;
          if (r.o !== undefined) return `O ${fmtPrice(r.o)}  H ${fmtPrice(r.h)}  L ${fmtPrice(r.l)}  C ${fmtPrice(r.c)}`;
          return `${ctx.dataset.label} ${fmtPrice(r.y)} (trade return ${fmtPct(r.trade.return * 100)})`;
        } } },
      },
    },
  });
  const hours = chart.bucket_bars;
  $("candle-note").textContent = hours > 1 ? `each candle merges ${hours} ${config.run.interval} bars` : "";
}

function fillTradeTable(trades) {
  const body = $("trade-table").querySelector("tbody");
  body.replaceChildren();
  trades.forEach((t, i) => {
    const tone = t.return >= 0 ? "up" : "down";
    body.append(el("tr", {},
      el("td", { text: String(i + 1) }), el("td", { class: "mono", text: fmtTime(t.entry_time, true) }),
      el("td", { class: "num", text: fmtPrice(t.entry_price) }), el("td", { class: "mono", text: fmtTime(t.exit_time, true) }),
      el("td", { class: "num", text: fmtPrice(t.exit_price) }), el("td", { class: `num ${tone}`, text: fmtPct(t.return * 100) })));
  });
  $("trade-count").textContent = `${trades.length} trades`;
}

async function showResult(run) {
  showMetrics(run.metrics);
  $("progress-card").hidden = true;
  $("charts").hidden = false;
  const chart = await api(`backtests/${runId}/chart`);
  if (chart.bars_changed) $("bars-note").textContent = "the stored candles changed since this run";
  drawEquity(chart);
  drawTrades(chart);
  fillTradeTable(chart.trades);
}

async function poll() {
  let run;
  try {
    run = await api(`backtests/${runId}`, { curves: 0 });
  } catch (err) {
    console.warn(err);
    setTimeout(poll, config.refreshMs * 3);
    return;
  }
  showStatus(run);
  if (run.status === "done") await showResult(run);
  else if (run.status !== "failed") setTimeout(poll, config.refreshMs);
}

showStatus(config.run);
if (config.run.status === "done") showResult(config.run);
else poll();
