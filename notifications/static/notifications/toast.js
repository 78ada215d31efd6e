// In-app notifications: a toast for each message the in-app channel pushes to this user (ws/notifications/).
// Loaded by the base template for signed-in users. Text only (textContent): a message can never inject markup.
// Reconnects with exponential backoff and jitter; a 4401 close (signed out) stops it. The box's data-state says
// whether the socket is open ("live"), so a test can wait for it before making something fire.

const box = document.createElement("div");
box.id = "toasts";
box.setAttribute("role", "status");
box.setAttribute("aria-live", "polite");
box.dataset.state = "connecting";
document.body.appendChild(box);

function show({ subject = "", body = "" }) {
  const toast = document.createElement("div");
  toast.className = "toast";
  const title = document.createElement("strong");
  title.textContent = subject;
  const text = document.createElement("div");
  text.className = "toast-body";
  // An alert's body starts with its subject, the toast's title: show the rest under it, not the title twice.
  text.textContent = subject && body.startsWith(subject) ? body.slice(subject.length).replace(/^[\s:]+/, "") : body;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => toast.remove());
  toast.append(close, title, text);
  box.appendChild(toast);
  setTimeout(() => toast.remove(), 15000);
}

let attempt = 0;
function connect() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  const ws = new WebSocket(`${scheme}//${window.location.host}/ws/notifications/`);
  ws.onopen = () => {
    attempt = 0;
    box.dataset.state = "live";
  };
  ws.onmessage = (event) => {
    try {
      const payload = JSON.parse(event.data);
      if (payload && payload.toast) {
        show(payload.toast);
        // Pages that list what the message is about (My dashboard's recent alerts) add it without a reload.
        document.dispatchEvent(new CustomEvent("notification", { detail: payload.toast }));
      }
    } catch (err) {
      console.warn("ignoring a non-JSON frame", err);
    }
  };
  ws.onclose = (event) => {
    box.dataset.state = event.code === 4401 ? "closed" : "reconnecting";
    if (event.code === 4401) return;
    const base = Math.min(30000, 1000 * 2 ** attempt);
    attempt += 1;
    setTimeout(connect, base / 2 + Math.random() * (base / 2));
  };
}

connect();
