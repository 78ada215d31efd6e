// The symbol page's live order book: a depth chart (cumulative bid and ask quantity against price) and a spread /
// imbalance time chart, fed by the `book` pushes of ws/market/<exchange>/<symbol>/ (books/live.py: at most 5 a
// second per market, the book's best levels as decimal strings, `valid` and the metrics).
//
// A push with valid=false means the book broke and is being rebuilt: the depth chart is cleared and the panel says
// "Resyncing", never showing the levels it had. The same while the socket is down: the book may have moved.
import { COLORS, fmtCompact, fmtPrice, fmtQty, fmtTime, num } from "./common.js";

const MAX_POINTS = 600; // the spread/imbalance history kept: two minutes at 5 pushes a second
const $ = (id) => document.getElementById(id);

/** Cumulative quantity from the best price outwards, as chart points in ascending price. */
export function cumulative(levels, side) {
  let total = 0;
  const points = [];
  for (const [price, qty] of levels) {
    const p = num(price);
    const q = num(qty);
    if (!Number.isFinite(p) || !Number.isFinite(q)) continue;
    total += q;
    points.push({ x: p, y: total });
  }
  // Bids arrive best (highest) first: the chart's x axis ascends, so they are drawn far to best.
  return side === "bids" ? points.reverse() : points;
}

function fmtSigned(value, digits) {
  const v = num(value);
  if (!Number.isFinite(v)) return "—";
  return `${v > 0 ? "+" : ""}${v.toFixed(digits)}`;
}

export class BookPanel {
  constructor(Chart) {
    this.panel = $("book-panel");
    this.latest = null;
    this.renderQueued = false;
    this.history = { spread: [], imbalance: [] };
    this.lastT = null;
    this.depthChart = new Chart($("depth-chart"), {
      type: "line",
      data: { datasets: [
        // Bids: the quantity at or above a price holds up to the next bid below ("before" steps on an ascending
        // axis); asks: at or below a price, up to the next ask above ("after").
        { label: "Bids", data: [], stepped: "before", borderColor: COLORS.up, backgroundColor: COLORS.volumeUp,
          fill: "origin", borderWidth: 1.5, pointRadius: 0 },
        { label: "Asks", data: [], stepped: "after", borderColor: COLORS.down, backgroundColor: COLORS.volumeDown,
          fill: "origin", borderWidth: 1.5, pointRadius: 0 },
      ] },
      options: {
        parsing: false,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 24, callback: (v) => fmtPrice(v) } },
          y: { position: "right", beginAtZero: true, ticks: { callback: (v) => fmtCompact(v) } },
        },
        plugins: {
          legend: { display: true, position: "top", align: "start", labels: { boxWidth: 10, boxHeight: 10 } },
          tooltip: { callbacks: {
            title: (items) => (items.length ? fmtPrice(items[0].parsed.x) : ""),
            label: (ctx) => `${ctx.dataset.label}: ${fmtQty(ctx.parsed.y)} cumulative`,
          } },
        },
      },
    });
    this.spreadChart = new Chart($("spread-chart"), {
      type: "line",
      data: { datasets: [
        { label: "Spread", data: [], yAxisID: "ySpread", borderColor: COLORS.vwap, backgroundColor: COLORS.vwap,
          borderWidth: 1.4, pointRadius: 0, stepped: "after" },
        { label: "Imbalance (10 bps)", data: [], yAxisID: "yImb", borderColor: COLORS.sma[0], backgroundColor: COLORS.sma[0],
          borderWidth: 1.4, pointRadius: 0, tension: 0.15 },
      ] },
      options: {
        parsing: false,
        interaction: { mode: "index", intersect: false },
        scales: {
          // Whole seconds at least: pushes come 200 ms apart, and sub-second ticks would repeat their labels.
          x: { type: "time", grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 24 },
               time: { minUnit: "second", tooltipFormat: "HH:mm:ss.SSS", displayFormats: { second: "HH:mm:ss", minute: "HH:mm" } } },
          // Headroom: a spread that sits at one tick for a while stays off the chart's top edge.
          ySpread: { position: "left", beginAtZero: true, grace: "25%", title: { display: true, text: "spread" },
                     ticks: { callback: (v) => fmtPrice(v) } },
          yImb: { position: "right", min: -1, max: 1, title: { display: true, text: "imbalance" }, grid: { display: false } },
        },
        plugins: { legend: { display: true, position: "top", align: "start", labels: { boxWidth: 10, boxHeight: 2 } } },
      },
    });
  }

  /** One `book` push: the newest wins, drawn at the next animation frame. */
  onPush(msg) {
    this.latest = msg;
    this.record(msg);
    if (this.renderQueued) return;
    this.renderQueued = true;
    requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  /** The socket dropped: the book may move while we are away, so nothing of it stays on screen. */
  onDisconnect() {
    this.latest = null;
    this.showState("offline");
    this.clearDepth();
  }

  record(msg) {
    const t = num(msg.t);
    const spread = this.history.spread;
    const imbalance = this.history.imbalance;
    if (Number.isFinite(t) && this.lastT !== null && t < this.lastT) {
      // Time went back (a replay started over): a new series.
      spread.length = 0;
      imbalance.length = 0;
    }
    if (!msg.valid || !msg.metrics) {
      // A gap in both lines where the book was not valid.
      const x = Number.isFinite(t) ? t : (this.lastT ?? Date.now()) + 1;
      spread.push({ x, y: null });
      imbalance.push({ x, y: null });
      this.lastT = x;
    } else if (Number.isFinite(t)) {
      spread.push({ x: t, y: num(msg.metrics.spread) });
      imbalance.push({ x: t, y: num(msg.metrics.imbalance) });
      this.lastT = t;
    }
    for (const series of [spread, imbalance]) if (series.length > MAX_POINTS) series.splice(0, series.length - MAX_POINTS);
  }

  showState(state) {
    this.panel.dataset.state = state;
    const label = { live: "", resyncing: "resyncing", offline: "disconnected", waiting: "" }[state] ?? "";
    $("book-status").textContent = label;
  }

  clearDepth() {
    for (const ds of this.depthChart.data.datasets) ds.data = [];
    // No price range either: the axis of the last book is part of what may no longer hold.
    delete this.depthChart.options.scales.x.min;
    delete this.depthChart.options.scales.x.max;
    this.depthChart.update("none");
    for (const id of ["book-bid", "book-ask", "book-spread", "book-mid", "book-imbalance", "book-depth"]) {
      $(id).textContent = "—";
    }
    $("book-time").textContent = "";
  }

  render() {
    const msg = this.latest;
    if (!msg) return;
    const [bidsSet, asksSet] = this.depthChart.data.datasets;
    this.spreadChart.data.datasets[0].data = this.history.spread;
    this.spreadChart.data.datasets[1].data = this.history.imbalance;
    this.spreadChart.update("none");
    if (!msg.valid) {
      this.showState("resyncing");
      this.clearDepth();
      return;
    }
    this.showState("live");
    bidsSet.data = cumulative(msg.bids || [], "bids");
    asksSet.data = cumulative(msg.asks || [], "asks");
    const x = this.depthChart.options.scales.x;
    const prices = [...bidsSet.data, ...asksSet.data].map((p) => p.x);
    if (prices.length) Object.assign(x, { min: Math.min(...prices), max: Math.max(...prices) });
    this.depthChart.update("none");
    const m = msg.metrics;
    $("book-bid").textContent = m ? fmtPrice(m.best_bid) : "—";
    $("book-ask").textContent = m ? fmtPrice(m.best_ask) : "—";
    $("book-spread").textContent = m ? fmtPrice(m.spread) : "—";
    $("book-mid").textContent = m ? fmtPrice(m.mid) : "—";
    $("book-imbalance").textContent = m ? fmtSigned(m.imbalance, 3) : "—";
    $("book-depth").textContent = m ? `${fmtQty(m.bid_depth_10bps)} / ${fmtQty(m.ask_depth_10bps)}` : "—";
    $("book-imbalance").className = `v ${m && num(m.imbalance) < 0 ? "down" : "up"}`;
    $("book-time").textContent = Number.isFinite(num(msg.t)) ? `as of ${fmtTime(num(msg.t))} UTC` : "";
  }
}
