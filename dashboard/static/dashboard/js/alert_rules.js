// The rule form: show only the chosen kind's parameters (every field stays in the page; the server validates).
import { config } from "./common.js";

const form = document.getElementById("rule-form");
if (form) {
  const kind = form.querySelector("select[name=kind]");
  const params = new Set(Object.values(config.kindFields).flat());
  const show = () => {
    const wanted = new Set(config.kindFields[kind.value] || []);
    for (const box of form.querySelectorAll(".field[data-field]")) {
      const name = box.dataset.field;
      if (params.has(name)) box.hidden = !wanted.has(name);
    }
  };
  kind.addEventListener("change", show);
  show();
}
