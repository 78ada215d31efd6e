// Whale alerts: history from /api/v1/whales (filtered server-side), then live alerts from ws/whales/
// (the same filters applied client-side).
import { LiveSocket, api, config, el, fmtCompact, fmtPrice, fmtQty, fmtTime, items, num } from "./common.js";

const MAX_ITEMS = 200;
const feed = document.getElementById("whale-feed");
const empty = document.getElementById("feed-empty");
const seen = new Set();

const [filterExchange, filterSymbol] = config.market ? config.market.split(/:(.*)/s) : ["", ""];
const minNotional = num(config.minNotional);

function matches(alert) {
  if (filterExchange && (alert.exchange !== filterExchange || alert.symbol !== filterSymbol)) return false;
  if (Number.isFinite(minNotional) && num(alert.notional) < minNotional) return false;
  return true;
}

function add(alerts, fresh) {
  const sorted = [...alerts].sort((a, b) => a.t - b.t);
  for (const a of sorted) {
    const id = `${a.exchange}:${a.symbol}:${a.trade_id}`;
    if (seen.has(id) || !matches(a)) continue;
    seen.add(id);
    const side = String(a.side || "").toLowerCase();
    const href = `/market/${encodeURIComponent(a.exchange)}/${String(a.symbol).split("/").map(encodeURIComponent).join("/")}/`;
    feed.prepend(el("li", { class: fresh ? "new" : "", "data-id": id },
      el("span", {}, el("span", { class: `badge ${side}`, text: side === "sell" ? "sell" : "buy" })),
      el("a", { href }, el("strong", { text: a.symbol }), " ", el("span", { class: "badge", text: a.exchange })),
      el("span", { class: "col-trade mono muted", text: `${fmtQty(a.quantity)} @ ${fmtPrice(a.price)}` }),
      el("span", { class: "when" },
        el("span", { class: `notional ${side === "sell" ? "down" : "up"}`, text: `$${fmtCompact(a.notional)}` }),
        el("br"), fmtTime(a.t, true))));
  }
  while (feed.children.length > MAX_ITEMS) feed.lastElementChild.remove();
  empty.hidden = feed.children.length > 0;
  document.getElementById("feed-count").textContent = feed.children.length ? `${feed.children.length} shown` : "";
}

async function load() {
  try {
    const body = await api("whales", {
      exchange: filterExchange, symbol: filterSymbol, min_notional: config.minNotional, limit: 100,
    });
    add(items(body), false);
  } catch (err) {
    console.error("whales", err);
  }
}

load().finally(() => {
  document.body.dataset.loaded = "true";
});

new LiveSocket(config.ws, {
  onMessage: (msg) => {
    if (msg.kind === "whales") add(msg.alerts || [], true);
  },
  onReconnect: load,
});
