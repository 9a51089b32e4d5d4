// The draw-a-digit page: a canvas to draw on, the server's answer, and what the model saw.
// Plain JavaScript, no libraries: the page works offline, served by `fastmlp serve`.
"use strict";

const DEBOUNCE_MS = 150; // ask again once the pen has rested this long
const INK_WIDTH = 18; // on a 280-pixel pad: about the stroke width of an MNIST digit

const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const preview = document.getElementById("preview");
const view = preview.getContext("2d");
const bars = document.getElementById("bars");
const digitText = document.getElementById("digit");
const confidenceText = document.getElementById("confidence");
const statusText = document.getElementById("status");

let drawing = null; // the pointer id of the stroke being drawn, and its last point
let timer = null;
let asked = 0; // numbers the requests, so a slow old answer cannot replace a newer one
let shown = 0;
let side = 28;

function clearPad() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
}

function clearAnswer(message) {
  digitText.textContent = "?";
  confidenceText.textContent = "";
  statusText.textContent = message;
  statusText.classList.remove("error");
  for (const bar of bars.querySelectorAll(".fill")) bar.style.width = "0%";
  for (const row of bars.children) row.classList.remove("top");
  for (const value of bars.querySelectorAll(".value")) value.textContent = "";
  drawPreview(null);
}

function makeBars(classes) {
  bars.textContent = "";
  for (let k = 0; k < classes; k++) {
    const row = document.createElement("li");
    row.dataset.digit = k;
    row.innerHTML =
      '<span class="label"></span><span class="track"><span class="fill"></span></span>' +
      '<span class="value"></span>';
    row.querySelector(".label").textContent = k;
    bars.appendChild(row);
  }
}

// --- drawing with pointer events: mouse, pen and touch alike ---------------------------

function point(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

function strokeTo(event) {
  const [x, y] = point(event);
  ink.beginPath();
  ink.moveTo(drawing.x, drawing.y);
  ink.lineTo(x, y);
  ink.stroke();
  drawing.x = x;
  drawing.y = y;
}

pad.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 && event.pointerType === "mouse") return;
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  const [x, y] = point(event);
  drawing = { id: event.pointerId, x, y };
  ink.lineWidth = INK_WIDTH;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  ink.strokeStyle = "#000";
  ink.beginPath(); // a dot, for a tap that does not move
  ink.arc(x, y, INK_WIDTH / 2, 0, 2 * Math.PI);
  ink.fillStyle = "#000";
  ink.fill();
});

pad.addEventListener("pointermove", (event) => {
  if (!drawing || event.pointerId !== drawing.id) return;
  // Coalesced events keep fast strokes smooth where the browser batches them.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) strokeTo(e);
  schedule();
});

function endStroke(event) {
  if (!drawing || event.pointerId !== drawing.id) return;
  drawing = null;
  schedule();
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

document.getElementById("clear").addEventListener("click", () => {
  clearTimeout(timer);
  asked++; // an answer still on its way is for the old drawing
  clearPad();
  clearAnswer("Draw a digit.");
});

// --- asking the server ----------------------------------------------------------------

function schedule() {
  clearTimeout(timer);
  timer = setTimeout(() => ask(JSON.stringify({ image: pad.toDataURL("image/png") }),
    "application/json"), DEBOUNCE_MS);
}

async function ask(body, contentType) {
  const number = ++asked;
  statusText.textContent = "thinking\u2026";
  let answer;
  let failed = null;
  try {
    const response = await fetch("/predict", {
      method: "POST", headers: { "Content-Type": contentType }, body,
    });
    answer = await response.json();
    if (!response.ok) failed = answer.error || `error ${response.status}`;
  } catch (error) {
    failed = `the server did not answer (${error.message})`;
  }
  if (number < shown || number !== asked) return; // a newer request is on its way
  shown = number;
  // How many answers the page has shown: lets a test (or a curious reader) wait for the next.
  document.body.dataset.answers = Number(document.body.dataset.answers || 0) + 1;
  if (failed) {
    clearAnswer(failed);
    statusText.classList.add("error");
  } else {
    show(answer);
  }
}

function show(answer) {
  const p = answer.probabilities;
  digitText.textContent = answer.digit;
  confidenceText.textContent = `${(100 * p[answer.digit]).toFixed(1)}%`;
  statusText.textContent = "";
  statusText.classList.remove("error");
  bars.querySelectorAll("li").forEach((row, k) => {
    row.classList.toggle("top", k === answer.digit);
    row.querySelector(".fill").style.width = `${(100 * p[k]).toFixed(1)}%`;
    row.querySelector(".value").textContent = `${(100 * p[k]).toFixed(1)}%`;
  });
  drawPreview(answer.preview);
}

// The model's input, one square per pixel, white ink on black as MNIST has it.
function drawPreview(pixels) {
  const cell = preview.width / side;
  view.fillStyle = "#000";
  view.fillRect(0, 0, preview.width, preview.height);
  if (!pixels) return;
  for (let i = 0; i < pixels.length; i++) {
    if (pixels[i] === 0) continue;
    const v = pixels[i];
    view.fillStyle = `rgb(${v},${v},${v})`;
    view.fillRect((i % side) * cell, Math.floor(i / side) * cell, cell, cell);
  }
  view.strokeStyle = "rgba(255,255,255,0.08)"; // a faint grid shows where the pixels are
  view.lineWidth = 1;
  for (let k = 1; k < side; k++) {
    view.beginPath();
    view.moveTo(k * cell + 0.5, 0);
    view.lineTo(k * cell + 0.5, preview.height);
    view.moveTo(0, k * cell + 0.5);
    view.lineTo(preview.width, k * cell + 0.5);
    view.stroke();
  }
}

// --- images from a file: the picker, or dropped on the pad ----------------------------

async function openImage(file) {
  if (!file) return;
  clearTimeout(timer);
  // The file itself goes to the server, so the answer is the one `fastmlp predict` gives.
  ask(file, file.type || "application/octet-stream");
  try {
    const bitmap = await createImageBitmap(file);
    const scale = Math.min(pad.width / bitmap.width, pad.height / bitmap.height);
    const w = bitmap.width * scale;
    const h = bitmap.height * scale;
    clearPad();
    ink.imageSmoothingEnabled = bitmap.width > pad.width;
    ink.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
  } catch (error) {
    clearPad(); // not an image the browser reads; the server says what is wrong
  }
}

document.getElementById("file").addEventListener("change", (event) => {
  openImage(event.target.files[0]);
  event.target.value = ""; // choosing the same file again is a change too
});

const dropZone = document.getElementById("drop-zone");
dropZone.addEventListener("dragover", (event) => {
  event.preventDefault();
  dropZone.classList.add("dragging");
});
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  openImage(event.dataTransfer.files[0]);
});

// --- the model ------------------------------------------------------------------------

async function loadModel() {
  const info = await (await fetch("/model")).json();
  side = info.side;
  document.getElementById("model-info").textContent =
    `${info.file}: ${info.architecture}, ${info.activation} hidden units, ` +
    `${info.output} output, ${info.parameters.toLocaleString("en")} parameters`;
  document.getElementById("weights").src = info.weights_png;
  makeBars(info.classes);
  document.body.dataset.ready = "true";
}

clearPad();
drawPreview(null);
loadModel().catch((error) => {
  statusText.textContent = `could not load the model description (${error.message})`;
  statusText.classList.add("error");
});
