// Symbol page: candles with SMA/EMA/VWAP overlays and volume, an RSI/MACD panel, the live trade tape, the
// symbol's whale trades and the live order book (book.js). History comes from the REST API; live updates from ws/market/<exchange>/<symbol>/.
import {
  COLORS, LiveSocket, api, chartDefaults, config, el, fmtCompact, fmtPct, fmtPrice, fmtQty, fmtTime, items, num,
} from "./common.js";
import { BookPanel } from "./book.js";

const MAX_CANDLES = 400;
const MAX_TAPE = 50;
const MAX_WHALES = 30;
const market = { exchange: config.exchange, symbol: config.symbol };

const state = {
  interval: config.interval,
  candles: new Map(), // open time (ms) -> {t, o, h, l, c, v, vwap}
  indicators: new Map(), // open time (ms) -> {t, sma: {period: value}, ema: {...}, rsi, macd, macd_signal, macd_hist}
  overlays: { sma: true, ema: false, vwap: true },
  panel: "rsi",
  tradeIds: new Set(),
  whaleIds: new Set(),
  loadSeq: 0,
  loading: false,
  pending: [], // candle pushes that arrive while history loads, replayed on top of it
};

const Chart = chartDefaults();
const book = new BookPanel(Chart);
const TIME_FORMATS = { millisecond: "HH:mm:ss", second: "HH:mm:ss", minute: "HH:mm", hour: "HH:mm", day: "MMM d" };
const $ = (id) => document.getElementById(id);

// ------------------------------------------------------------------ reading items (API answers and pushes alike)
// A push carries exactly the API's items (analytics/payloads.py): one shape per concept, read here once.
function candleFrom(item) {
  return {
    t: item.t,
    o: num(item.open),
    h: num(item.high),
    l: num(item.low),
    c: num(item.close),
    v: num(item.volume),
    vwap: num(item.vwap),
  };
}

function indicatorFrom(item) {
  return {
    t: item.t,
    sma: item.sma || {},
    ema: item.ema || {},
    rsi: num(item.rsi),
    macd: num(item.macd),
    macd_signal: num(item.macd_signal),
    macd_hist: num(item.macd_hist),
  };
}

function trim(map, max) {
  if (map.size <= max) return;
  const keys = [...map.keys()].sort((a, b) => a - b);
  for (const k of keys.slice(0, keys.length - max)) map.delete(k);
}

// ------------------------------------------------------------------ charts
const candleChart = new Chart($("candle-chart"), {
  type: "candlestick",
  data: { datasets: [] },
  options: {
    parsing: false,
    interaction: { mode: "index", intersect: false },
    scales: {
      x: { type: "timeseries", offset: true, grid: { display: false }, ticks: { maxRotation: 0, autoSkipPadding: 24 },
           time: { tooltipFormat: "yyyy-MM-dd HH:mm", displayFormats: TIME_FORMATS } },
      y: { position: "right", ticks: { includeBounds: false, callback: (v) => fmtPrice(v) } },
      yVol: { display: false, beginAtZero: true },
    },
    plugins: {
      tooltip: {
        callbacks: {
          label(ctx) {
            const r = ctx.raw;
            if (ctx.dataset.type === "candlestick" || r.o !== undefined) {
              return `O ${fmtPrice(r.o)}  H ${fmtPrice(r.h)}  L ${fmtPrice(r.l)}  C ${fmtPrice(r.c)}`;
            }
            const v = ctx.dataset.yAxisID === "yVol" ? fmtCompact(r.y) : fmtPrice(r.y);
            return `${ctx.dataset.label} ${v}`;
          },
        },
      },
    },
  },
});

const indicatorChart = new Chart($("indicator-chart"), {
  type: "line",
  data: { datasets: [] },
  options: {
    parsing: false,
    interaction: { mode: "index", intersect: false },
    scales: {
      x: { type: "timeseries", offset: true, display: false },
      yRsi: { position: "right", min: 0, max: 100, ticks: { stepSize: 10, callback: (v) => (v === 30 || v === 70 ? v : null) } },
      yMacd: { position: "right", display: false, grace: "10%" },
    },
    plugins: { legend: { display: true, position: "top", align: "start", labels: { boxWidth: 10, boxHeight: 2 } } },
  },
});

function periodsOf(kind) {
  const periods = new Set();
  for (const p of state.indicators.values()) for (const k of Object.keys(p[kind])) periods.add(k);
  return [...periods].sort((a, b) => Number(a) - Number(b));
}

function line(label, data, color, yAxisID = "y", extra = {}) {
  return { type: "line", label, data, yAxisID, borderColor: color, backgroundColor: color, borderWidth: 1.4,
           pointRadius: 0, tension: 0.15, spanGaps: true, ...extra };
}

let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => {
    renderQueued = false;
    render();
  });
}

function render() {
  const candles = [...state.candles.values()].sort((a, b) => a.t - b.t);
  const inds = [...state.indicators.values()].sort((a, b) => a.t - b.t);
  $("chart-empty").hidden = candles.length > 0;

  const maxVol = Math.max(1e-12, ...candles.map((c) => c.v || 0));
  const datasets = [
    { type: "candlestick", label: `${market.symbol} ${state.interval}`, yAxisID: "y",
      data: candles.map(({ t, o, h, l, c }) => ({ x: t, o, h, l, c })),
      backgroundColors: { up: COLORS.up, down: COLORS.down, unchanged: "#8a94a8" },
      borderColors: { up: COLORS.up, down: COLORS.down, unchanged: "#8a94a8" } },
    { type: "bar", label: "Volume", yAxisID: "yVol", order: 10,
      data: candles.map((c) => ({ x: c.t, y: c.v })),
      backgroundColor: candles.map((c) => (c.c >= c.o ? COLORS.volumeUp : COLORS.volumeDown)) },
  ];
  if (state.overlays.sma) {
    periodsOf("sma").forEach((p, i) => datasets.push(
      line(`SMA ${p}`, inds.filter((r) => r.sma[p] != null).map((r) => ({ x: r.t, y: num(r.sma[p]) })), COLORS.sma[i % 3])));
  }
  if (state.overlays.ema) {
    periodsOf("ema").forEach((p, i) => datasets.push(
      line(`EMA ${p}`, inds.filter((r) => r.ema[p] != null).map((r) => ({ x: r.t, y: num(r.ema[p]) })), COLORS.ema[i % 3])));
  }
  if (state.overlays.vwap) {
    datasets.push(line("VWAP", candles.filter((c) => Number.isFinite(c.vwap)).map((c) => ({ x: c.t, y: c.vwap })),
      COLORS.vwap, "y", { borderDash: [4, 3] }));
  }
  candleChart.data.datasets = datasets;
  // Volume bars use the bottom quarter of the price pane.
  candleChart.options.scales.yVol.max = maxVol * 4;
  // Explicit bounds: the financial controller gets both axes wrong (down to 0 and 1970) for a single candle.
  const scales = candleChart.options.scales;
  if (candles.length) {
    const ys = datasets.filter((d) => d.yAxisID === "y").flatMap((d) => d.data.flatMap((p) => (p.o !== undefined ? [p.l, p.h] : [p.y])))
      .filter(Number.isFinite);
    const lo = Math.min(...ys);
    const hi = Math.max(...ys);
    const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.001 || 1;
    Object.assign(scales.x, { min: candles[0].t, max: candles[candles.length - 1].t });
    Object.assign(scales.y, { min: lo - pad, max: hi + pad });
  } else {
    for (const key of ["min", "max"]) {
      delete scales.x[key];
      delete scales.y[key];
    }
  }
  candleChart.update("none");

  const sub = [];
  const rsi = state.panel === "rsi";
  if (rsi) {
    sub.push(line("RSI 14", inds.filter((r) => Number.isFinite(r.rsi)).map((r) => ({ x: r.t, y: r.rsi })), "#c77dff", "yRsi"));
    const band = (y) => candles.map((c) => ({ x: c.t, y }));
    sub.push(line("70", band(70), "rgba(234,57,67,0.45)", "yRsi", { borderDash: [3, 3], borderWidth: 1 }));
    sub.push(line("30", band(30), "rgba(22,199,132,0.45)", "yRsi", { borderDash: [3, 3], borderWidth: 1 }));
  } else {
    const pts = inds.filter((r) => Number.isFinite(r.macd));
    sub.push(line("MACD", pts.map((r) => ({ x: r.t, y: r.macd })), "#4c8dff", "yMacd"));
    sub.push(line("Signal", pts.filter((r) => Number.isFinite(r.macd_signal)).map((r) => ({ x: r.t, y: r.macd_signal })),
      "#f0b90b", "yMacd"));
    const hist = pts.filter((r) => Number.isFinite(r.macd_hist));
    sub.push({ type: "bar", label: "Histogram", yAxisID: "yMacd", data: hist.map((r) => ({ x: r.t, y: r.macd_hist })),
               backgroundColor: hist.map((r) => (r.macd_hist >= 0 ? COLORS.volumeUp : COLORS.volumeDown)) });
  }
  // Keep the panel's time axis aligned with the candles even before indicators exist.
  sub.push({ type: "line", label: "", data: candles.map((c) => ({ x: c.t, y: null })), yAxisID: rsi ? "yRsi" : "yMacd",
             pointRadius: 0, borderWidth: 0 });
  indicatorChart.options.scales.yRsi.display = rsi;
  indicatorChart.options.scales.yMacd.display = !rsi;
  indicatorChart.options.plugins.legend.labels.filter = (item) => item.text && !/^\d+$/.test(item.text);
  indicatorChart.data.datasets = sub;
  indicatorChart.update("none");
}

// Only the newest stretch of candles without a long break: `make demo` imports 2020's 1m days while its replay
// runs on today's clock, and one time axis over both squeezes each into a sliver at an end of the chart.
// Exchange outages leave gaps of minutes to hours, far below the bound, so they stay visible as gaps.
function dropBeforeLongBreak(map, intervalMs) {
  const times = [...map.keys()].sort((a, b) => a - b);
  const longBreak = Math.max(200 * intervalMs, 86_400_000);
  for (let i = times.length - 1; i > 0; i -= 1) {
    if (times[i] - times[i - 1] > longBreak) {
      for (const t of times.slice(0, i)) map.delete(t);
      return;
    }
  }
}

async function loadHistory() {
  const seq = ++state.loadSeq;
  state.loading = true;
  state.pending = [];
  const params = { exchange: market.exchange, symbol: market.symbol, interval: state.interval, limit: 300 };
  try {
    const [candles, indicators] = await Promise.all([api("candles", params), api("indicators", params)]);
    if (seq !== state.loadSeq) return; // the interval changed while this was loading
    state.candles.clear();
    state.indicators.clear();
    for (const item of items(candles)) {
      const c = candleFrom(item);
      state.candles.set(c.t, c);
    }
    for (const item of items(indicators)) {
      const p = indicatorFrom(item);
      state.indicators.set(p.t, p);
    }
    dropBeforeLongBreak(state.candles, config.intervalSeconds[state.interval] * 1000);
    const first = Math.min(...state.candles.keys());
    for (const t of [...state.indicators.keys()]) if (t < first) state.indicators.delete(t);
  } catch (err) {
    console.error("history", err);
  }
  state.loading = false;
  for (const msg of state.pending) applyCandles(msg);
  state.pending = [];
  scheduleRender();
}

// ------------------------------------------------------------------ trade tape
function tapeRow(trade, fresh) {
  const row = el("tr", { class: fresh ? "new" : "", "data-id": String(trade.trade_id) },
    el("td", { class: "muted", text: fmtTime(trade.t) }),
    el("td", { class: trade.side === "sell" ? "down" : "up", text: fmtPrice(trade.price) }),
    el("td", { text: fmtQty(trade.quantity) }));
  return row;
}

function addTrades(trades, fresh) {
  const body = $("trade-tape").tBodies[0];
  // Pushes and the API list differ in order; newest must end up on top.
  const sorted = [...trades].sort((a, b) => a.t - b.t || a.trade_id - b.trade_id);
  for (const t of sorted) {
    if (state.tradeIds.has(t.trade_id)) continue;
    state.tradeIds.add(t.trade_id);
    body.prepend(tapeRow(t, fresh));
  }
  while (body.rows.length > MAX_TAPE) {
    state.tradeIds.delete(Number(body.lastElementChild.dataset.id));
    body.lastElementChild.remove();
  }
  $("tape-empty").hidden = body.rows.length > 0;
  $("tape-count").textContent = body.rows.length ? `${body.rows.length} latest` : "";
}

async function loadTrades() {
  try {
    const body = await api("trades", { exchange: market.exchange, symbol: market.symbol, limit: MAX_TAPE });
    addTrades(items(body), false);
  } catch (err) {
    console.error("trades", err);
  }
}

// ------------------------------------------------------------------ whales
function addWhales(alerts, fresh) {
  const list = $("whale-list");
  const sorted = [...alerts].sort((a, b) => a.t - b.t);
  for (const a of sorted) {
    if (a.exchange !== market.exchange || a.symbol !== market.symbol) continue;
    const key = String(a.trade_id);
    if (state.whaleIds.has(key)) continue;
    state.whaleIds.add(key);
    const side = String(a.side || "").toLowerCase();
    list.prepend(el("li", { class: fresh ? "new" : "", "data-id": key },
      el("span", { class: `badge ${side}`, text: side || "?" }),
      el("span", { class: `notional ${side === "sell" ? "down" : "up"}`, text: `$${fmtCompact(a.notional)}` }),
      el("span", { class: "muted mono", text: fmtTime(a.t) }),
      el("span", { class: "meta", text: `${fmtQty(a.quantity)} @ ${fmtPrice(a.price)}` })));
  }
  while (list.children.length > MAX_WHALES) list.lastElementChild.remove();
  $("whales-empty").hidden = list.children.length > 0;
}

async function loadWhales() {
  try {
    const body = await api("whales", { exchange: market.exchange, symbol: market.symbol, limit: MAX_WHALES });
    addWhales(items(body), false);
  } catch (err) {
    console.error("whales", err);
  }
}

// ------------------------------------------------------------------ 24h stats
function showStats(s) {
  const last = $("stat-last");
  const prev = num(last.dataset.value);
  const price = num(s.last_price);
  last.textContent = fmtPrice(price);
  last.dataset.value = String(s.last_price);
  if (Number.isFinite(prev) && prev !== price) {
    last.classList.remove("flash-up", "flash-down");
    void last.offsetWidth; // restart the flash animation
    last.classList.add(price > prev ? "flash-up" : "flash-down");
  }
  const change = $("stat-change");
  change.textContent = fmtPct(s.change_pct);
  change.className = `v ${num(s.change_pct) < 0 ? "down" : "up"}`;
  $("stat-high").textContent = fmtPrice(s.high);
  $("stat-low").textContent = fmtPrice(s.low);
  $("stat-volume").textContent = fmtCompact(s.volume);
  $("stat-count").textContent = num(s.trade_count).toLocaleString("en-US");
  document.title = `${fmtPrice(price)} ${market.symbol} · ${market.exchange} · CryptoPulse`;
}

// ------------------------------------------------------------------ live updates
function applyCandles(msg) {
  for (const item of msg.candles || []) {
    if (item.interval !== state.interval) continue;
    const c = candleFrom(item);
    state.candles.set(c.t, c);
  }
  for (const item of msg.indicators || []) {
    if (item.interval !== state.interval) continue;
    const p = indicatorFrom(item);
    state.indicators.set(p.t, p);
  }
  trim(state.candles, MAX_CANDLES);
  trim(state.indicators, MAX_CANDLES);
}

function onPush(msg) {
  switch (msg.kind) {
    case "candles":
      if (state.loading) state.pending.push(msg);
      applyCandles(msg);
      scheduleRender();
      break;
    case "trades":
      addTrades(msg.trades || [], true);
      break;
    case "stats":
      showStats(msg);
      break;
    case "whales":
      addWhales(msg.alerts || [], true);
      break;
    case "book":
      book.onPush(msg);
      break;
    default:
      break;
  }
}

// ------------------------------------------------------------------ controls
$("interval-select").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-interval]");
  if (!button || button.dataset.interval === state.interval) return;
  state.interval = button.dataset.interval;
  for (const b of $("interval-select").querySelectorAll("button")) b.classList.toggle("active", b === button);
  const url = new URL(window.location.href);
  url.searchParams.set("interval", state.interval);
  window.history.replaceState(null, "", url);
  loadHistory();
});

for (const box of document.querySelectorAll("#overlay-toggles input[data-overlay]")) {
  state.overlays[box.dataset.overlay] = box.checked;
  box.addEventListener("change", () => {
    state.overlays[box.dataset.overlay] = box.checked;
    scheduleRender();
  });
}

$("panel-select").addEventListener("click", (event) => {
  const button = event.target.closest("button[data-panel]");
  if (!button) return;
  state.panel = button.dataset.panel;
  for (const b of $("panel-select").querySelectorAll("button")) b.classList.toggle("active", b === button);
  scheduleRender();
});

const stats = api("stats", market).then((body) => {
  const row = items(body).find((s) => s.exchange === market.exchange && s.symbol === market.symbol);
  if (row) showStats(row);
}).catch((err) => console.error("stats", err));

Promise.all([loadHistory(), loadTrades(), loadWhales(), stats]).finally(() => {
  document.body.dataset.loaded = "true";
});

// After a reconnect, refetch what the socket missed while it was down.
new LiveSocket(config.ws, {
  onMessage: onPush,
  onReconnect: () => Promise.all([loadHistory(), loadTrades(), loadWhales()]),
  onDown: () => book.onDisconnect(),
});
