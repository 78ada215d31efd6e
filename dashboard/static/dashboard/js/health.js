// Pipeline health for operators: polls /api/v1/health every few seconds and fills the KPI tiles and tables.
import { api, config, el, fmtAge, fmtTime, num, toMs } from "./common.js";

const $ = (id) => document.getElementById(id);

function kpi(id, value, level) {
  const node = $(id);
  node.querySelector(".v").textContent = value;
  node.classList.remove("good", "warn", "bad");
  if (level) node.classList.add(level);
}

function fill(tableId, emptyId, rows) {
  const body = $(tableId).tBodies[0];
  body.replaceChildren(...rows);
  if (emptyId) $(emptyId).hidden = rows.length > 0;
}

const cell = (text, cls = "") => el("td", { class: cls, text: String(text) });
const asList = (v) => (Array.isArray(v) ? v : v && typeof v === "object" ? Object.entries(v).map(([k, x]) => ({ name: k, ...(typeof x === "object" ? x : { value: x }) })) : []);

function detail(snapshot) {
  if (!snapshot || typeof snapshot !== "object") return "";
  const parts = [];
  if (snapshot.trades_published !== undefined) parts.push(`${num(snapshot.trades_published).toLocaleString("en-US")} published`);
  if (snapshot.dead_letters !== undefined) parts.push(`${snapshot.dead_letters} dead letters`);
  if (snapshot.gaps !== undefined) parts.push(`${snapshot.gaps} gaps`);
  return parts.join(" · ");
}

function lostCell(missed) {
  const total = num(missed?.total);
  if (!Number.isFinite(total)) return cell("—", "num mono");
  const node = cell(total.toLocaleString("en-US"), `num mono ${total > 0 ? "down" : ""}`);
  node.title = `${num(missed.abandoned).toLocaleString("en-US")} abandoned (gave up), `
    + `${num(missed.unrecoverable).toLocaleString("en-US")} older than the exchange's REST history`;
  return node;
}

// An exchange's order books in ingest: syncs and resyncs (breaks), "—" for a process without the books channel.
function booksCell(books) {
  if (!books || !(num(books.syncs) > 0 || num(books.resyncs) > 0)) return cell("—", "num mono muted");
  return cell(`${num(books.syncs)} / ${num(books.resyncs)}`, `num mono ${num(books.resyncs) > 0 ? "down" : ""}`);
}

function render(h) {
  const now = Date.now();
  // Ingest
  const ingest = h.ingest || {};
  const sources = asList(ingest.sources ?? ingest.exchanges ?? ingest.per_exchange);
  const rate = num(ingest.rate ?? ingest.trades_per_second ?? ingest.total_rate);
  kpi("kpi-ingest", Number.isFinite(rate) ? rate.toLocaleString("en-US", { maximumFractionDigits: 1 }) : "—",
    Number.isFinite(rate) ? (rate > 0 ? "good" : "warn") : null);
  fill("ingest-table", "ingest-empty", sources.map((s) => el("tr", {},
    cell(s.exchange ?? s.name ?? "?"),
    cell(num(s.rate ?? s.trades_per_second ?? s.value).toLocaleString("en-US", { maximumFractionDigits: 1 }), "num mono"),
    lostCell(s.not_recovered),
    booksCell(s.books),
    cell(detail(s.snapshot), "num muted"))));
  // The books consumers (consume_books): one row per member.
  const bookMembers = asList(h.book_consumers);
  fill("books-table", "books-empty", bookMembers.map((m) => el("tr", {},
    cell(m.name, "mono"),
    cell(num(m.consumed).toLocaleString("en-US"), "num mono"),
    cell(`${num(m.valid_markets)} / ${num(m.markets)}`, "num mono"),
    cell(num(m.breaks) + num(m.invalid_snapshots), `num mono ${num(m.breaks) + num(m.invalid_snapshots) > 0 ? "down" : ""}`),
    cell(num(m.dead_lettered).toLocaleString("en-US"), "num mono"),
    cell(num(m.batches).toLocaleString("en-US"), "num mono"))));
  // Trades missed for good: gaps given up on and ids older than the exchanges' REST history.
  const lost = num(ingest.not_recovered);
  kpi("kpi-lost", Number.isFinite(lost) ? lost.toLocaleString("en-US") : "—",
    !Number.isFinite(lost) ? null : lost > 0 ? "bad" : "good");

  // Kafka lag
  const kafka = h.kafka || {};
  const partitions = asList(kafka.partitions ?? kafka.lag ?? h.lag);
  const total = num(kafka.total_lag ?? partitions.reduce((acc, p) => acc + (num(p.lag) || 0), 0));
  kpi("kpi-lag", Number.isFinite(total) ? total.toLocaleString("en-US") : "—",
    !Number.isFinite(total) ? null : total > 10000 ? "bad" : total > 1000 ? "warn" : "good");
  fill("lag-table", "lag-empty", partitions.map((p) => el("tr", {},
    cell(p.topic ?? kafka.topic ?? ""), cell(p.partition ?? p.name, "num mono"),
    cell(p.committed ?? "—", "num mono"), cell(p.end ?? p.end_offset ?? "—", "num mono"),
    cell(num(p.lag).toLocaleString("en-US"), "num mono"))));

  // Last trade per market
  const last = asList(h.last_trades ?? h.last_trade ?? h.symbols);
  let freshest = Infinity;
  fill("age-table", "age-empty", last.map((r) => {
    const at = toMs(r.last_trade_at ?? r.traded_at);
    const age = r.age_seconds !== undefined && r.age_seconds !== null ? num(r.age_seconds) * 1000 : now - at;
    if (Number.isFinite(age)) freshest = Math.min(freshest, age);
    return el("tr", {}, cell(`${r.symbol ?? r.name} · ${r.exchange ?? ""}`), cell(fmtTime(at, true), "num mono"),
      cell(fmtAge(age), `num mono ${age > 60_000 ? "down" : "up"}`));
  }));
  kpi("kpi-age", Number.isFinite(freshest) ? fmtAge(freshest) : "—",
    !Number.isFinite(freshest) ? null : freshest > 60_000 ? "warn" : "good");

  // Celery queues
  const queues = asList(h.queues ?? h.celery?.queues ?? h.celery);
  const depth = queues.reduce((acc, q) => acc + (num(q.depth ?? q.value ?? q.waiting) || 0), 0);
  kpi("kpi-queue", depth.toLocaleString("en-US"), depth > 1000 ? "bad" : depth > 100 ? "warn" : "good");
  fill("queue-table", null, queues.map((q) => el("tr", {}, cell(q.name ?? q.queue),
    cell(num(q.depth ?? q.value ?? q.waiting).toLocaleString("en-US"), "num mono"))));

  // Dead letters
  const dlqRaw = h.dlq ?? h.dlq_count;
  const dlq = num(typeof dlqRaw === "object" && dlqRaw !== null ? dlqRaw.count ?? dlqRaw.total : dlqRaw);
  kpi("kpi-dlq", Number.isFinite(dlq) ? dlq.toLocaleString("en-US") : "—", !Number.isFinite(dlq) ? null : dlq > 0 ? "warn" : "good");

  // Trades outside every partition (stored in the default partition: kept, but a day's partition is missing)
  const outside = num(h.storage?.default_rows);
  kpi("kpi-outside", Number.isFinite(outside) ? outside.toLocaleString("en-US") : "—",
    !Number.isFinite(outside) ? null : outside > 0 ? "warn" : "good");

  // The PostgreSQL read replica, when one is configured (DATABASE_REPLICA_URL): how far it trails the primary.
  const replica = h.replica;
  $("kpi-replica").hidden = !replica;
  if (replica) {
    const bytes = num(replica.lag_bytes);
    const seconds = num(replica.lag_seconds);
    const text = !Number.isFinite(bytes) ? "—"
      : `${Number.isFinite(seconds) ? `${seconds.toLocaleString("en-US", { maximumFractionDigits: 1 })} s · ` : ""}`
        + `${Math.round(bytes / 1024).toLocaleString("en-US")} KiB`;
    kpi("kpi-replica", text, !Number.isFinite(bytes) ? "bad" : seconds > 30 ? "bad" : seconds > 5 ? "warn" : "good");
  }
}

async function poll() {
  try {
    const h = await api("health");
    render(h);
    const stalled = h.liveness?.status === "stalled" ? `consumer group stalled: ${h.liveness.reason}` : null;
    const errors = [stalled, ...(h.errors || []), h.kafka?.error, h.dlq?.error].filter(Boolean);
    $("health-updated").textContent = `Updated ${fmtTime(Date.now())} UTC${errors.length ? ` · ${errors.join("; ")}` : ""}`;
  } catch (err) {
    $("health-updated").textContent = `Health endpoint unavailable (${err.message}); retrying`;
  } finally {
    document.body.dataset.loaded = "true";
    setTimeout(poll, config.refreshMs || 3000);
  }
}

poll();
