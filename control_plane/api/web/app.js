// The translation page: only the public API (/api/v1/...), with the key typed below.
// No build step, no external resources; served with script-src 'self'.

const $ = (id) => document.getElementById(id);
const KEY_STORE = "mtb.apiKey";
const FINAL = new Set(["completed", "failed", "cancelled"]);
const POLL_MS = 1000;
const PREVIEW_BYTES = 512 * 1024;
const EXT_OF_FORMAT = { text: ".txt", html: ".html", xml: ".xml" };
const MEDIA_OF_FORMAT = { text: "text/plain", html: "text/html", xml: "application/xml" };

const state = { job: null, timer: null, url: null, pairs: [] };

class ApiError extends Error {
  constructor(message, status, code, retryAfter) {
    super(message);
    this.status = status;
    this.code = code;
    this.retryAfter = retryAfter;
  }
}

function authHeaders(extra = {}) {
  const key = $("api-key").value.trim();
  return key ? { ...extra, Authorization: `Bearer ${key}` } : { ...extra };
}

// Errors are JSON {"error": {"code", "message"}}: the message is what the user sees.
async function errorOf(resp) {
  let message = `HTTP ${resp.status} ${resp.statusText}`.trim();
  let code = "";
  try {
    const body = await resp.json();
    if (body && body.error) {
      message = body.error.message || message;
      code = body.error.code || "";
    }
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(message, resp.status, code, resp.headers.get("Retry-After"));
}

async function api(path, options = {}) {
  let resp;
  try {
    resp = await fetch(path, { ...options, headers: authHeaders(options.headers), cache: "no-store" });
  } catch (err) {
    throw new ApiError(`network error: ${err.message}`, 0, "network");
  }
  if (!resp.ok) throw await errorOf(resp);
  return resp;
}

// ---- messages ------------------------------------------------------------------------

function showError(message) {
  const el = $("error");
  el.textContent = message;
  el.hidden = !message;
}

function setStatus(message) {
  $("status").textContent = message;
}

function setBusy(busy) {
  $("submit").disabled = busy;
  $("cancel").disabled = !busy;
  $("job-form").setAttribute("aria-busy", String(busy));
}

// ---- languages -----------------------------------------------------------------------

let names = null;
try {
  names = new Intl.DisplayNames([navigator.language || "en"], { type: "language" });
} catch {
  names = null;
}

function languageName(code) {
  if (code === "auto") return "Detect automatically";
  let name = null;
  try {
    name = names && names.of(code);
  } catch {
    name = null;
  }
  return name && name !== code ? `${name} (${code})` : code;
}

function option(value) {
  const el = document.createElement("option");
  el.value = value;
  el.textContent = languageName(value);
  return el;
}

function fill(select, values, preferred) {
  const previous = select.value;
  select.replaceChildren(...values.map(option));
  for (const want of [previous, ...preferred]) {
    if (values.includes(want)) {
      select.value = want;
      return;
    }
  }
}

function fillTargets() {
  const source = $("source").value;
  const targets = [
    ...new Set(state.pairs.filter((p) => source === "auto" || p.source === source).map((p) => p.target)),
  ].sort();
  fill($("target"), targets, ["pt", "en"]);
}

async function loadLanguages() {
  const note = $("languages-note");
  try {
    const body = await (await api("/api/v1/languages")).json();
    if (!body.ready || !body.pairs.length) {
      note.textContent = "The translation engine is still loading; retrying…";
      setTimeout(loadLanguages, 3000);
      return;
    }
    state.pairs = body.pairs;
    const sources = [...new Set(body.pairs.map((p) => p.source))].sort();
    fill($("source"), ["auto", ...sources], ["en", "auto"]);
    fillTargets();
    note.textContent = "";
  } catch (err) {
    note.textContent = `Could not load the languages: ${err.message}; retrying…`;
    setTimeout(loadLanguages, 5000);
  }
}

// ---- the file ------------------------------------------------------------------------

function chosenFile() {
  const files = $("file").files;
  return files && files.length ? files[0] : null;
}

function fileChanged() {
  const file = chosenFile();
  $("file-name").textContent = file
    ? `Selected: ${file.name} (${formatBytes(file.size)}); it is translated instead of the text.`
    : "";
  $("clear-file").hidden = !file;
  $("content").disabled = Boolean(file);
  $("format").disabled = Boolean(file);
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function setupDrop() {
  const zone = $("drop-zone");
  // a file dropped anywhere else must not make the browser leave the page
  for (const type of ["dragover", "drop"]) window.addEventListener(type, (e) => e.preventDefault());
  zone.addEventListener("dragover", (e) => {
    e.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("over");
    if (e.dataTransfer && e.dataTransfer.files.length) {
      $("file").files = e.dataTransfer.files;
      fileChanged();
    }
  });
}

// ---- a job ---------------------------------------------------------------------------

function resetResult() {
  if (state.url) URL.revokeObjectURL(state.url);
  state.url = null;
  $("result-section").hidden = true;
  $("result").value = "";
  const link = $("download");
  link.hidden = true;
  link.removeAttribute("href");
}

async function submit(event) {
  event.preventDefault();
  showError("");
  if (!$("api-key").value.trim()) {
    showError("Enter your API key first.");
    $("api-key").focus();
    return;
  }
  const file = chosenFile();
  const fields = {
    source_language: $("source").value,
    target_language: $("target").value,
    priority: $("priority").value,
  };
  if (!fields.target_language) {
    showError("No language pair is available yet.");
    return;
  }
  const content = $("content").value;
  if (!file && !content.trim()) {
    showError("Paste some text or choose a file.");
    $("content").focus();
    return;
  }
  stopPolling();
  resetResult();
  setBusy(true);
  setStatus("Submitting…");
  $("progress").value = 0;
  try {
    let resp;
    if (file) {
      const form = new FormData();
      for (const [k, v] of Object.entries(fields)) form.append(k, v);
      form.append("file", file, file.name);
      resp = await api("/api/v1/documents", { method: "POST", body: form });
    } else {
      const format = $("format").value;
      resp = await api("/api/v1/translate", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ ...fields, content, format }),
      });
    }
    const job = await resp.json();
    state.job = {
      id: job.job_id,
      fileName: file ? file.name : null,
      format: file ? null : $("format").value,
      target: fields.target_language,
    };
    render(job);
    poll();
  } catch (err) {
    showError(err.message);
    setStatus("Not submitted.");
    setBusy(false);
  }
}

function stopPolling() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

function render(view) {
  const progress = typeof view.progress === "number" ? view.progress : 0;
  $("progress").value = progress;
  const parts = [`Job ${view.job_id}: ${view.status}`, `${Math.round(progress * 100)}%`];
  if (typeof view.word_count === "number") {
    const done = typeof view.words_processed === "number" ? view.words_processed : 0;
    parts.push(`${done} / ${view.word_count} words`);
  }
  if (view.current_speed) parts.push(`${Math.round(view.current_speed)} words/min`);
  if (view.estimated_completion && !FINAL.has(view.status)) {
    const eta = new Date(view.estimated_completion);
    if (!Number.isNaN(eta.getTime())) parts.push(`done by about ${eta.toLocaleTimeString()}`);
  }
  if (view.detected_language) parts.push(`detected: ${languageName(view.detected_language)}`);
  setStatus(parts.join(" · "));
  $("job-form").dataset.status = view.status;
}

async function poll() {
  const job = state.job;
  if (!job) return;
  try {
    const view = await (await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`)).json();
    if (state.job !== job) return;
    render(view);
    if (FINAL.has(view.status)) {
      await finish(job, view);
      return;
    }
    state.timer = setTimeout(poll, POLL_MS);
  } catch (err) {
    if (state.job !== job) return;
    if (err.status === 429 || err.status === 0 || err.status >= 500) {
      // rate limited, or the service is away for a moment: keep watching
      const wait = err.status === 429 ? 1000 * (Number(err.retryAfter) || 2) : 3000;
      setStatus(`${err.message}; checking again in ${Math.round(wait / 1000)} s`);
      state.timer = setTimeout(poll, wait);
      return;
    }
    showError(err.message);
    setBusy(false);
  }
}

function filenameFrom(disposition) {
  if (!disposition) return null;
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(disposition);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      // fall back to the ASCII name
    }
  }
  const plain = /filename\s*=\s*"([^"]*)"/i.exec(disposition) || /filename\s*=\s*([^;]+)/i.exec(disposition);
  return plain ? plain[1].trim() : null;
}

function fallbackName(job) {
  if (job.fileName) {
    const dot = job.fileName.lastIndexOf(".");
    const stem = dot > 0 ? job.fileName.slice(0, dot) : job.fileName;
    const ext = dot > 0 ? job.fileName.slice(dot) : ".txt";
    return `${stem}.${job.target}${ext}`;
  }
  return `translation.${job.target}${EXT_OF_FORMAT[job.format] || ".txt"}`;
}

function isTextual(type) {
  return /^text\/|[+/]xml\b|json|x-gettext|x-po|subrip|vtt|markdown/i.test(type || "");
}

async function finish(job, view) {
  stopPolling();
  setBusy(false);
  if (view.status === "failed") {
    showError(`The job failed: ${view.error || "no reason given"}`);
    return;
  }
  if (view.status === "cancelled") return;
  try {
    const resp = await api(`/api/v1/jobs/${encodeURIComponent(job.id)}/result`);
    const type = resp.headers.get("Content-Type") || "";
    let blob;
    let name;
    let preview;
    if (type.startsWith("application/json")) {
      // text, html and xml jobs: the translation is in the JSON
      const body = await resp.json();
      preview = body.translated_content || "";
      const media = job.fileName ? "text/plain" : MEDIA_OF_FORMAT[job.format] || "text/plain";
      blob = new Blob([preview], { type: `${media};charset=utf-8` });
      name = fallbackName(job);
    } else {
      // a document job: the translated file itself
      blob = await resp.blob();
      name = filenameFrom(resp.headers.get("Content-Disposition")) || fallbackName(job);
      preview =
        isTextual(type) && blob.size <= PREVIEW_BYTES
          ? await blob.text()
          : `(${type || "binary"} file of ${formatBytes(blob.size)}: use the download link)`;
    }
    if (state.job !== job) return;
    resetResult();
    state.url = URL.createObjectURL(blob);
    $("result").value = preview;
    const link = $("download");
    link.href = state.url;
    link.download = name;
    link.textContent = `Download ${name} (${formatBytes(blob.size)})`;
    link.hidden = false;
    $("result-section").hidden = false;
  } catch (err) {
    showError(`Could not fetch the result: ${err.message}`);
  }
}

async function cancel() {
  const job = state.job;
  if (!job) return;
  stopPolling();
  try {
    const view = await (await api(`/api/v1/jobs/${encodeURIComponent(job.id)}`, { method: "DELETE" })).json();
    render(view);
    setBusy(false);
  } catch (err) {
    showError(err.message);
    poll(); // it may have finished meanwhile: show what it is
  }
}

// ---- start ---------------------------------------------------------------------------

function start() {
  const key = $("api-key");
  try {
    key.value = sessionStorage.getItem(KEY_STORE) || "";
  } catch {
    // storage disabled: the key lives in the field only
  }
  key.addEventListener("input", () => {
    try {
      sessionStorage.setItem(KEY_STORE, key.value.trim());
    } catch {
      // storage disabled
    }
  });
  $("source").addEventListener("change", fillTargets);
  $("file").addEventListener("change", fileChanged);
  $("clear-file").addEventListener("click", () => {
    $("file").value = "";
    fileChanged();
    $("content").focus();
  });
  $("job-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", cancel);
  setupDrop();
  fileChanged();
  loadLanguages();
}

start();
