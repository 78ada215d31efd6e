// Backtests list page: the form shows the chosen strategy's parameters and defaults; metrics are formatted.
import { config, fmtPct, num } from "./common.js";

const strategies = new Map(config.strategies.map((s) => [s.name, s]));
const select = document.getElementById("id_strategy");
const paramsInput = document.getElementById("id_params");
const help = document.getElementById("strategy-help");

function showStrategy() {
  const s = strategies.get(select.value);
  if (!s) return;
  const defaults = Object.entries(s.params).map(([k, v]) => `${k}=${v}`).join(" ");
  paramsInput.placeholder = defaults;
  help.textContent = `${s.description} Defaults: ${defaults}`;
}

if (select && paramsInput) {
  select.addEventListener("change", showStrategy);
  showStrategy();
}

export function fmtMetric(name, value) {
  const v = num(value);
  if (!Number.isFinite(v)) return "—";
  if (["total_return", "buy_and_hold_return", "cagr"].includes(name)) return fmtPct(v * 100);
  if (["max_drawdown", "win_rate", "exposure"].includes(name)) return `${(v * 100).toFixed(2)}%`;
  if (["final_equity", "fees"].includes(name)) return v.toLocaleString("en-US", { maximumFractionDigits: 2 });
  if (name === "trades") return String(v);
  return v.toFixed(3);
}

for (const cell of document.querySelectorAll("td[data-metric]")) {
  const value = cell.dataset.value === "None" ? "" : cell.dataset.value;
  cell.textContent = fmtMetric(cell.dataset.metric, value);
  const v = num(value);
  if (cell.dataset.metric.endsWith("return") && Number.isFinite(v)) cell.classList.add(v >= 0 ? "up" : "down");
}
