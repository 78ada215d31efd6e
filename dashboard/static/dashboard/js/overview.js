// Overview: one tile per (exchange, symbol) with last price, 24h change, volume and a 1m sparkline; stats
// arrive live from ws/overview/ (kind "stats"), the sparkline's last minute follows the last price.
import { LiveSocket, api, config, fmtCompact, fmtPct, fmtPrice, items, num } from "./common.js";

const SPARK_POINTS = 60;
const MINUTE = 60_000;
const SVG_NS = "http://www.w3.org/2000/svg";
const tilesEl = document.getElementById("tiles");
const emptyEl = document.getElementById("tiles-empty");
const tiles = new Map(); // "exchange:symbol" -> {el, spark, points}
// My dashboard (/me/) shows only the watchlist's markets, in its order (all of them server-rendered).
const only = Array.isArray(config.markets) ? new Set(config.markets) : null;

const key = (exchange, symbol) => `${exchange}:${symbol}`;

function sparkTrend(points) {
  return points[points.length - 1].y >= points[0].y ? "up" : "down";
}

function makeSpark(container) {
  // An inline SVG scales to the tile's width at any size, crisply, without a chart per tile.
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 100 40");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.classList.add("spark");
  const area = document.createElementNS(SVG_NS, "path");
  area.classList.add("spark-area");
  const stroke = document.createElementNS(SVG_NS, "path");
  stroke.classList.add("spark-line");
  svg.append(area, stroke);
  container.replaceChildren(svg);
  return { svg, area, stroke };
}

function drawSpark(tile) {
  // One minute of data is still a line: a flat one across the tile.
  const points = tile.points.length === 1 ? [tile.points[0], { x: tile.points[0].x + MINUTE, y: tile.points[0].y }] : tile.points;
  if (points.length < 2) return;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const sx = (x) => ((x - x0) / (x1 - x0 || 1)) * 100;
  // A flat series (one minute so far) sits in the middle of the tile, not on its floor.
  const sy = (y) => (y1 === y0 ? 20 : 37 - ((y - y0) / (y1 - y0)) * 34);
  const line = points.map((p, i) => `${i ? "L" : "M"}${sx(p.x).toFixed(2)},${sy(p.y).toFixed(2)}`).join("");
  tile.spark.stroke.setAttribute("d", line);
  tile.spark.area.setAttribute("d", `${line}L100,40L0,40Z`);
  tile.spark.svg.dataset.trend = sparkTrend(points);
  tile.spark.svg.dataset.points = String(tile.points.length);
}

function tileFor(exchange, symbol) {
  const k = key(exchange, symbol);
  if (tiles.has(k)) return tiles.get(k);
  let node = tilesEl.querySelector(`.tile[data-exchange="${CSS.escape(exchange)}"][data-symbol="${CSS.escape(symbol)}"]`);
  if (!node) {
    node = document.getElementById("tile-template").content.firstElementChild.cloneNode(true);
    node.dataset.exchange = exchange;
    node.dataset.symbol = symbol;
    node.href = `/market/${encodeURIComponent(exchange)}/${symbol.split("/").map(encodeURIComponent).join("/")}/`;
    node.querySelector(".tile-sym").textContent = symbol;
    node.querySelector(".badge").textContent = exchange;
    // Keep the grid in (exchange, symbol) order, like the server renders it.
    const after = [...tilesEl.children].find((t) => key(t.dataset.exchange, t.dataset.symbol) > k);
    tilesEl.insertBefore(node, after || null);
  }
  emptyEl.hidden = true;
  const tile = { el: node, spark: makeSpark(node.querySelector(".tile-spark")), points: [] };
  tiles.set(k, tile);
  loadSpark(exchange, symbol, tile);
  return tile;
}

async function loadSpark(exchange, symbol, tile) {
  try {
    const body = await api("candles", { exchange, symbol, interval: "1m", limit: SPARK_POINTS });
    tile.points = items(body)
      .map((c) => ({ x: c.t, y: num(c.close) }))
      .filter((p) => Number.isFinite(p.x) && Number.isFinite(p.y))
      .sort((a, b) => a.x - b.x)
      .slice(-SPARK_POINTS);
    drawSpark(tile);
  } catch (err) {
    console.error("sparkline", exchange, symbol, err);
  }
}

function setField(node, field, text, value) {
  const target = node.querySelector(`[data-field="${field}"]`);
  if (!target) return;
  target.textContent = text;
  if (value !== undefined) target.dataset.value = String(value);
}

function showStats(s) {
  if (only && !only.has(key(s.exchange, s.symbol))) return;
  const tile = tileFor(s.exchange, s.symbol);
  const node = tile.el;
  const priceEl = node.querySelector('[data-field="last_price"]');
  const prev = num(priceEl.dataset.value);
  const price = num(s.last_price);
  setField(node, "last_price", fmtPrice(price), s.last_price);
  if (Number.isFinite(prev) && prev !== price) {
    priceEl.classList.remove("flash-up", "flash-down");
    void priceEl.offsetWidth; // restart the flash animation
    priceEl.classList.add(price > prev ? "flash-up" : "flash-down");
  }
  const change = node.querySelector('[data-field="change_pct"]');
  setField(node, "change_pct", fmtPct(s.change_pct), s.change_pct);
  change.classList.toggle("up", num(s.change_pct) >= 0);
  change.classList.toggle("down", num(s.change_pct) < 0);
  setField(node, "quote_volume", fmtCompact(s.quote_volume), s.quote_volume);
  setField(node, "trade_count", num(s.trade_count).toLocaleString("en-US"), s.trade_count);

  // The sparkline's last point is the current minute: move it, or open the next minute.
  const at = s.t;
  if (Number.isFinite(at) && Number.isFinite(price) && tile.points.length) {
    const minute = Math.floor(at / MINUTE) * MINUTE;
    const last = tile.points[tile.points.length - 1];
    if (minute === last.x) last.y = price;
    else if (minute > last.x) tile.points = [...tile.points, { x: minute, y: price }].slice(-SPARK_POINTS);
    drawSpark(tile);
  }
  updateSummary();
}

// Tiles the server rendered: format their numbers like live ones and draw their sparklines.
for (const node of tilesEl.querySelectorAll(".tile")) {
  const { exchange, symbol } = node.dataset;
  tileFor(exchange, symbol);
  const get = (f) => node.querySelector(`[data-field="${f}"]`).dataset.value;
  if (get("last_price") === "") continue; // a watchlist market without stats yet: its dashes stay
  setField(node, "last_price", fmtPrice(get("last_price")));
  setField(node, "change_pct", fmtPct(get("change_pct")));
  setField(node, "quote_volume", fmtCompact(get("quote_volume")));
  setField(node, "trade_count", num(get("trade_count")).toLocaleString("en-US"));
}
updateSummary();

function updateSummary() {
  const rows = [...tilesEl.querySelectorAll(".tile")].map((node) => {
    const value = (f) => num(node.querySelector(`[data-field="${f}"]`)?.dataset.value);
    return { name: `${node.dataset.symbol} · ${node.dataset.exchange}`, change: value("change_pct"), trades: value("trade_count") };
  });
  const summary = document.getElementById("summary");
  summary.hidden = rows.length === 0;
  if (!rows.length) return;
  document.getElementById("sum-markets").textContent = String(rows.length);
  const trades = rows.reduce((acc, r) => acc + (Number.isFinite(r.trades) ? r.trades : 0), 0);
  document.getElementById("sum-trades").textContent = trades.toLocaleString("en-US");
  const ranked = rows.filter((r) => Number.isFinite(r.change)).sort((a, b) => b.change - a.change);
  if (!ranked.length) return;
  // With one market there is no "best" and "worst": show it once, coloured by its own sign.
  showMover("gainer", ranked[0]);
  showMover("loser", ranked.length > 1 ? ranked[ranked.length - 1] : null);
}

function showMover(which, row) {
  const value = document.getElementById(`sum-${which}`);
  value.textContent = row ? fmtPct(row.change) : "—";
  value.className = `v ${row ? (row.change < 0 ? "down" : "up") : ""}`;
  document.getElementById(`sum-${which}-name`).textContent = row ? row.name : "\u00a0";
}

async function refresh() {
  try {
    for (const s of items(await api("stats"))) showStats(s);
  } catch (err) {
    console.error("stats", err);
  }
}

refresh().finally(() => {
  document.body.dataset.loaded = "true";
});

new LiveSocket(config.ws, {
  onMessage: (msg) => {
    if (msg.kind === "stats") showStats(msg);
  },
  onReconnect: refresh,
});
