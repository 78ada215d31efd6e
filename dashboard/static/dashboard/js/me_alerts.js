// My dashboard: an alert pushed to this user (the in-app toast's "notification" event, notifications/toast.js) goes
// to the top of Recent alerts and counts on its rule's row, without a reload. Text only (textContent).

const table = document.getElementById("recent-alert-table");
const empty = document.getElementById("recent-alerts-empty");
const limit = Number(table?.dataset.limit || 20);

/** A stored price without the column's padding ("61836.010000000000" -> "61836.01"), as the page renders it. */
function plain(value) {
  const text = String(value ?? "");
  return text.includes(".") ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

/** Epoch milliseconds as "YYYY-MM-DD HH:MM:SS" in UTC (the page's time zone). */
function utc(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

function addAlert(data) {
  const body = table.tBodies[0];
  if (body.querySelector(`tr[data-alert="${Number(data.id)}"]`)) return false;
  const row = body.insertRow(0);
  row.dataset.alert = String(Number(data.id));
  row.dataset.rule = String(Number(data.rule));
  const cells = [
    [utc(Date.now()), "mono"],
    [`${data.exchange}:${data.symbol}`, ""],
    [data.message || "", "alert-message"],
    [plain(data.price) || "—", "num"],
  ];
  for (const [text, className] of cells) {
    const cell = row.insertCell();
    cell.textContent = text;
    if (className) cell.className = className;
  }
  const link = document.createElement("a");
  link.href = `/alerts/${Number(data.rule)}/`;
  link.textContent = `#${Number(data.rule)}`;
  row.insertCell().append(link);
  while (body.rows.length > limit) body.deleteRow(-1);
  table.hidden = false;
  if (empty) empty.hidden = true;
  return true;
}

function countOnRule(data) {
  const row = document.querySelector(`#my-rule-table tr[data-rule="${Number(data.rule)}"]`);
  if (!row) return;
  const fired = row.querySelector("[data-field=fired]");
  fired.textContent = String(Number(fired.textContent) + 1);
  const t = Number(data.t);
  if (Number.isFinite(t)) row.querySelector("[data-field=last_fired]").textContent = `${utc(t)} UTC`;
}

document.addEventListener("notification", (event) => {
  const { key = "", data = {} } = event.detail || {};
  // Only alerts (not the notices of undelivered messages), each once.
  if (!table || !key.startsWith("alert:") || data.id === undefined) return;
  if (addAlert(data)) countOnRule(data);
});
