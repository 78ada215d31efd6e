// Shared helpers for the dashboard pages: page config, API calls, number formatting and a live socket
// that reconnects by itself with backoff and shows its state in the top bar.

export const config = JSON.parse(document.getElementById("page-config").textContent);

/** GET an API endpoint (relative to /api/v1/) with query parameters; resolves to the decoded JSON. */
export async function api(endpoint, params = {}) {
  const url = new URL(config.api + endpoint, window.location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, v);
  }
  const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`${endpoint}: HTTP ${response.status}`);
  return response.json();
}

/** The list of items of an API answer, whether it is a bare list or a paginated envelope. */
export function items(body) {
  if (Array.isArray(body)) return body;
  if (!body || typeof body !== "object") return [];
  return body.results || body.items || body.data || [];
}

/** Epoch milliseconds from a number, a numeric string or an ISO 8601 string. */
export function toMs(value) {
  if (value === null || value === undefined || value === "") return NaN;
  if (typeof value === "number") return value;
  if (/^\d+$/.test(value)) return Number(value);
  return Date.parse(value);
}

export const num = (v) => (v === null || v === undefined || v === "" ? NaN : Number(v));

/** A price with as many decimals as its magnitude needs (61,837.63 / 0.24531). */
export function fmtPrice(value) {
  const v = num(value);
  if (!Number.isFinite(v)) return "—";
  const abs = Math.abs(v);
  const digits = abs >= 1000 ? 2 : abs >= 1 ? 4 : abs >= 0.01 ? 5 : 8;
  return v.toLocaleString("en-US", { minimumFractionDigits: Math.min(2, digits), maximumFractionDigits: digits });
}

/** A quantity: up to 6 decimals, trailing zeros dropped. */
export function fmtQty(value) {
  const v = num(value);
  if (!Number.isFinite(v)) return "—";
  return v.toLocaleString("en-US", { maximumFractionDigits: Math.abs(v) >= 100 ? 2 : 6 });
}

/** A large amount in compact form (1.2M, 348.5K). */
export function fmtCompact(value) {
  const v = num(value);
  if (!Number.isFinite(v)) return "—";
  return v.toLocaleString("en-US", { notation: "compact", maximumFractionDigits: 2 });
}

export function fmtPct(value) {
  const v = num(value);
  if (!Number.isFinite(v)) return "—";
  return `${v > 0 ? "+" : ""}${v.toFixed(2)}%`;
}

export function fmtTime(ms, withDate = false) {
  if (!Number.isFinite(ms)) return "—";
  const d = new Date(ms);
  const time = d.toLocaleTimeString("en-GB", { hour12: false, timeZone: "UTC" });
  return withDate ? `${d.toISOString().slice(0, 10)} ${time}` : time;
}

export function fmtAge(ms) {
  if (!Number.isFinite(ms)) return "—";
  const s = Math.max(0, ms / 1000);
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${Math.round(s / 86400)} d`;
}

/** Create an element with attributes and children (strings become text nodes, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

const statusEl = document.getElementById("conn-status");

function showStatus(state, label) {
  if (!statusEl) return;
  statusEl.hidden = false;
  statusEl.dataset.state = state;
  statusEl.querySelector(".label").textContent = label;
}

/**
 * A WebSocket to one of the dashboard's live paths. Reconnects with exponential backoff (with jitter, capped)
 * and shows "Live" / "Reconnecting in N s" / "Disconnected" in the top bar. `onMessage` gets each decoded
 * payload; `onReconnect` runs after a connection comes back so the page can refetch what it missed; `onDown` runs
 * each time the connection closes (what the page shows live may go stale meanwhile).
 */
export class LiveSocket {
  constructor(path, { onMessage, onReconnect = null, onDown = null, minDelay = 500, maxDelay = 15000 } = {}) {
    this.path = path;
    this.onMessage = onMessage;
    this.onReconnect = onReconnect;
    this.onDown = onDown;
    this.minDelay = minDelay;
    this.maxDelay = maxDelay;
    this.attempt = 0;
    this.everOpened = false;
    this.closedByUser = false;
    this.timer = null;
    window.addEventListener("online", () => this.reconnectNow());
    this.connect();
  }

  url() {
    const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
    return `${scheme}//${window.location.host}${this.path}`;
  }

  connect() {
    showStatus(this.everOpened ? "reconnecting" : "connecting", this.everOpened ? "Reconnecting…" : "Connecting…");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      const wasReconnect = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      showStatus("live", "Live");
      if (wasReconnect && this.onReconnect) this.onReconnect();
    };
    ws.onmessage = (event) => {
      let payload;
      try {
        payload = JSON.parse(event.data);
      } catch (err) {
        console.warn("ignoring a non-JSON frame", err);
        return;
      }
      this.onMessage(payload);
    };
    ws.onclose = () => {
      if (this.closedByUser) return;
      if (this.onDown) this.onDown();
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    const base = Math.min(this.maxDelay, this.minDelay * 2 ** this.attempt);
    const delay = base / 2 + Math.random() * (base / 2);
    this.attempt += 1;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    const until = Date.now() + delay;
    const label = () => `Disconnected · retrying in ${Math.max(0, Math.ceil((until - Date.now()) / 1000))} s`;
    showStatus(this.attempt > 4 ? "offline" : "reconnecting", label());
    this.countdown = setInterval(() => showStatus(statusEl.dataset.state, label()), 500);
    this.timer = setTimeout(() => {
      clearInterval(this.countdown);
      this.connect();
    }, delay);
  }

  reconnectNow() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return;
    clearTimeout(this.timer);
    clearInterval(this.countdown);
    this.connect();
  }
}

/** Chart.js defaults for the dark theme (call once per page that draws charts). */
export function chartDefaults() {
  const Chart = window.Chart;
  Chart.defaults.color = "#8a94a8";
  Chart.defaults.borderColor = "rgba(35, 43, 61, 0.9)";
  Chart.defaults.font.family = 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
  Chart.defaults.font.size = 11;
  Chart.defaults.animation = false;
  Chart.defaults.maintainAspectRatio = false;
  Chart.defaults.plugins.legend.display = false;
  return Chart;
}

export const COLORS = {
  up: "#16c784",
  down: "#ea3943",
  sma: ["#4c8dff", "#2ec4d6", "#8fb4ff"],
  ema: ["#c77dff", "#ff7ac6", "#b39ddb"],
  vwap: "#f0b90b",
  volumeUp: "rgba(22, 199, 132, 0.35)",
  volumeDown: "rgba(234, 57, 67, 0.35)",
};
