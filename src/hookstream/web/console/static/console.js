// The console's few behaviours. Every page works without them; they only make it nicer.
"use strict";

// The authentication choice: show the fields of the chosen type only. The hidden sections
// are disabled too, so the browser neither sends nor checks them.
function showAuthFields(select) {
  for (const section of document.querySelectorAll("[data-auth-section]")) {
    const chosen = section.dataset.authSection === select.value;
    section.hidden = !chosen;
    section.disabled = !chosen;
  }
}

// The connector's type: show its own fields only (HTTP: base URL, routes, authentication).
function showTypeFields(select) {
  for (const section of document.querySelectorAll("[data-type-section]")) {
    const chosen = section.dataset.typeSection === select.value;
    section.hidden = !chosen;
    for (const input of section.querySelectorAll("input, select")) input.disabled = !chosen;
  }
  const auth = document.querySelector("[data-auth-select]");
  if (auth && select.value === "http") showAuthFields(auth);
}

// "All gateways" makes the list of gateways moot.
function syncAllGateways(box) {
  const picker = document.getElementById(box.dataset.controls);
  if (!picker) return;
  for (const input of picker.querySelectorAll("input")) input.disabled = box.checked;
  picker.classList.toggle("muted", box.checked);
}

async function copyText(button) {
  const target = document.getElementById(button.dataset.copy);
  if (!target) return;
  const text = target.textContent.trim();
  try {
    await navigator.clipboard.writeText(text);
  } catch (error) {
    // Plain http on another host is not a secure context: select it for Ctrl-C instead.
    const range = document.createRange();
    range.selectNodeContents(target);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
}

// The transform editor: what the expression makes of the latest message, as it is typed.
function transformPreview(area) {
  const output = document.querySelector("[data-transform-output]");
  const csrf = area.form.querySelector("input[name=csrf_token]");
  if (!output || !csrf) return;
  const show = (name, value) => { output.querySelector(name).textContent = value; };
  let timer = null;
  let asked = 0;
  const ask = async () => {
    const mine = ++asked;
    const body = new URLSearchParams({csrf_token: csrf.value, expression: area.value});
    let answer;
    try {
      const response = await fetch(area.dataset.transformPreview, {method: "POST", body});
      answer = await response.json();
    } catch (error) {
      answer = {error: "The preview is not available (signed out?)."};
    }
    if (mine !== asked) return;  // a later keystroke asked again
    output.hidden = false;
    show("[data-transform-message]",
         "message" in answer ? JSON.stringify(answer.message, null, 2) : "");
    show("[data-transform-result]",
         "error" in answer ? answer.error : JSON.stringify(answer.result, null, 2));
    output.querySelector("[data-transform-result]").classList.toggle("error", "error" in answer);
  };
  area.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(ask, 300);
  });
  if (area.value.trim()) ask();
}

document.addEventListener("DOMContentLoaded", () => {
  const transform = document.querySelector("[data-transform-preview]");
  if (transform) transformPreview(transform);
  const auth = document.querySelector("[data-auth-select]");
  if (auth) {
    showAuthFields(auth);
    auth.addEventListener("change", () => showAuthFields(auth));
  }
  const connectorType = document.querySelector("[data-type-select]");
  if (connectorType) {
    showTypeFields(connectorType);
    connectorType.addEventListener("change", () => showTypeFields(connectorType));
  }
  for (const box of document.querySelectorAll("[data-all-gateways]")) {
    syncAllGateways(box);
    box.addEventListener("change", () => syncAllGateways(box));
  }
  for (const button of document.querySelectorAll("[data-copy]")) {
    button.hidden = false;
    button.addEventListener("click", () => copyText(button));
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  // A delivery still in the queue: look again in a moment.
  const refresh = document.querySelector("[data-refresh]");
  if (refresh) {
    setTimeout(() => window.location.reload(), Number(refresh.dataset.refresh) * 1000);
  }
});
