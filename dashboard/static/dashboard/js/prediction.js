// The symbol page's next-bar prediction card: refreshed from /api/v1/predictions while the page is open, so a
// new bar's P(up) and the realised accuracy appear without a reload (the ml worker writes them as bars close).
import { api, items } from "./common.js";

const card = document.getElementById("prediction-card");
const REFRESH_MS = 15000;

function pct(value, digits) {
  return `${(value * 100).toFixed(digits)}%`;
}

async function refresh() {
  const model = card.dataset.model;
  const windowSize = Number(card.dataset.window);
  try {
    const rows = items(await api("predictions", { model, limit: Math.min(windowSize + 60, 1000) }));
    if (!rows.length) return;
    const latest = rows[0];
    const pUp = document.getElementById("prediction-p-up");
    pUp.textContent = pct(latest.p_up, 1);
    pUp.classList.toggle("up", latest.p_up > 0.5);
    pUp.classList.toggle("down", !(latest.p_up > 0.5));
    document.getElementById("prediction-bar").textContent = `${latest.open_time.slice(0, 16).replace("T", " ")} UTC`;
    const scored = rows.filter((r) => r.correct !== null).slice(0, windowSize);
    if (scored.length) {
      const right = scored.filter((r) => r.correct).length;
      document.getElementById("prediction-live").textContent = pct(right / scored.length, 1);
      document.getElementById("prediction-live-count").textContent = String(scored.length);
    }
  } catch (err) {
    console.warn("prediction refresh failed", err); // the card keeps its last values
  }
}

if (card) setInterval(refresh, REFRESH_MS);
