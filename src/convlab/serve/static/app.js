// The page of `convlab serve`: send an image to /predict and /gradcam, show the top classes and the overlay.
// body[data-state] is loading -> idle -> busy -> done | error, so that tests can wait on it; "token" while it
// asks for the access token of a server started with one.
"use strict";

const TOP_K = 5;
const TOKEN_KEY = "convlab-serve-token"; // in this tab's sessionStorage: gone when the tab closes
const element = (id) => document.getElementById(id);
let card = null;
let token = sessionStorage.getItem(TOKEN_KEY);

// The server answered 401: it needs a token, or refused the one sent.
class NeedsToken extends Error {}

function setState(state) {
  document.body.dataset.state = state;
}

function showError(message) {
  element("error").textContent = message;
  element("error").hidden = false;
  setState("error");
}

async function askJson(url, options = {}) {
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(url, { ...options, headers });
  if (response.status === 401) {
    const refused = token !== null;
    token = null;
    sessionStorage.removeItem(TOKEN_KEY);
    throw new NeedsToken(
      refused
        ? "The server refused that token; enter it again."
        : "This server needs an access token; ask whoever runs it.",
    );
  }
  let answer;
  try {
    answer = await response.json();
  } catch {
    throw new Error(`The server answered ${response.status} without JSON.`);
  }
  if (!response.ok) {
    throw new Error(answer.error || `The server answered ${response.status}.`);
  }
  return answer;
}

function formWith(file) {
  const form = new FormData();
  form.append("file", file);
  return form;
}

function describeModel(model) {
  const size = model.input.size.join("×");
  const parts = [
    `${model.name}`,
    `${model.num_classes} classes`,
    `input ${model.input.channels}×${size}`,
    `${model.parameters.toLocaleString("en")} parameters`,
  ];
  const top1 = model.metrics && (model.metrics.val_top1 ?? model.metrics.test_top1);
  if (typeof top1 === "number") {
    parts.push(`validation top-1 ${(100 * top1).toFixed(1)}%`);
  }
  if (model.format === "onnx") {
    parts.push("ONNX");
  }
  return parts.join(" · ");
}

function percent(probability) {
  return `${(100 * probability).toFixed(1)}%`;
}

function showPredictions(predictions) {
  const list = element("predictions");
  list.replaceChildren();
  for (const guess of predictions) {
    const item = document.createElement("li");
    item.className = "prediction";
    item.dataset.index = String(guess.index);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = guess.label;
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = percent(guess.probability);
    bar.append(fill);
    const value = document.createElement("span");
    value.className = "percent";
    value.textContent = percent(guess.probability);
    item.append(label, bar, value);
    list.append(item);
  }
}

async function showGradCam(file) {
  const image = element("gradcam");
  const caption = element("gradcam-caption");
  image.hidden = true;
  if (!card.gradcam) {
    caption.textContent = "Grad-CAM is not available for an ONNX model: it needs the PyTorch weights' gradients.";
    return;
  }
  caption.textContent = "Computing Grad-CAM…";
  const cam = await askJson("gradcam", { method: "POST", body: formWith(file) });
  await new Promise((resolve, reject) => {
    image.onload = resolve;
    image.onerror = () => reject(new Error("The Grad-CAM image could not be shown."));
    image.src = cam.image;
  });
  image.hidden = false;
  caption.textContent = `Grad-CAM at ${cam.layer} for “${cam.target.label}”, ${card.input.size.join("×")}`;
}

async function classify(file) {
  if (!card) {
    return;
  }
  setState("busy");
  element("error").hidden = true;
  element("result").hidden = false;
  const preview = element("preview");
  if (preview.src.startsWith("blob:")) {
    URL.revokeObjectURL(preview.src);
  }
  preview.src = URL.createObjectURL(file);
  element("preview-caption").textContent = file.name;
  try {
    const answer = await askJson(`predict?topk=${TOP_K}`, { method: "POST", body: formWith(file) });
    showPredictions(answer.predictions);
    element("timing").textContent = `${answer.elapsed_ms.toFixed(1)} ms on the server`;
    await showGradCam(file);
    setState("done");
  } catch (error) {
    element("result").hidden = true;
    if (error instanceof NeedsToken) {
      askForToken(error.message);
    } else {
      showError(error.message);
    }
  }
}

function askForToken(message) {
  card = null;
  element("error").hidden = true;
  element("token-message").textContent = message;
  element("token-form").hidden = false;
  element("token-input").focus();
  setState("token");
}

function watchTokenForm() {
  element("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = element("token-input");
    token = input.value.trim();
    input.value = "";
    if (token === "") {
      token = null;
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    element("token-form").hidden = true;
    loadCard();
  });
}

function watchInputs() {
  const zone = element("drop-zone");
  element("file-input").addEventListener("change", (event) => {
    if (event.target.files.length > 0) {
      classify(event.target.files[0]);
    }
  });
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    if (event.dataTransfer.files.length > 0) {
      classify(event.dataTransfer.files[0]);
    }
  });
}

async function loadCard() {
  setState("loading");
  try {
    card = await askJson("model");
    element("model-line").textContent = describeModel(card);
    setState("idle");
  } catch (error) {
    element("model-line").textContent = "The model card could not be loaded.";
    if (error instanceof NeedsToken) {
      askForToken(error.message);
    } else {
      showError(error.message);
    }
  }
}

function start() {
  watchInputs();
  watchTokenForm();
  loadCard();
}

start();
