// Documents and jobs on the newsmt page: a thin client of POST /v1/documents and the /v1/jobs routes.
// As in app.js, everything from the user or the server goes onto the page as textContent, never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const POLL_MS = 1500;
  let polling = null;

  function authHeaders() {
    const key = $("api-key").value;
    return key ? { Authorization: `Bearer ${key}` } : {};
  }

  function message(status, body) {
    const error = body && typeof body.error === "object" && body.error ? body.error : {};
    if (status === 401 || status === 403) {
      $("key-field").hidden = false;
      return "This server needs a valid API key: enter it in the API key field above and try again.";
    }
    return typeof error.message === "string" ? error.message : `the server answered ${status}`;
  }

  async function post(url, file, extra) {
    const data = new FormData();
    data.append("file", file, file.name);
    for (const [name, value] of Object.entries(extra)) data.append(name, value);
    const response = await fetch(url, { method: "POST", headers: authHeaders(), body: data });
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error(message(response.status, body));
    return body;
  }

  // -- documents ----------------------------------------------------------------------------------------------------
  async function translateDocument(file) {
    $("doc-error").hidden = true;
    $("doc-result").hidden = true;
    $("doc-status").textContent = `Translating ${file.name}…`;
    try {
      const info = await post("/v1/documents", file, { source: $("source").value });
      const link = $("doc-download");
      link.href = info.download_url;
      link.download = info.filename;
      link.textContent = `Download ${info.filename}`;
      $("doc-meta").textContent = `${info.segments} sentences, ${info.cached_segments} from the cache; `
        + `available until ${new Date(info.expires_at).toLocaleString()}`;
      $("doc-result").hidden = false;
      $("doc-status").textContent = `${file.name} is translated.`;
    } catch (error) {
      $("doc-status").textContent = "";
      $("doc-error").textContent = `Could not translate ${file.name}: ${error.message}`;
      $("doc-error").hidden = false;
    }
  }

  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const [file] = event.dataTransfer.files;
    if (file) translateDocument(file);
  });
  $("file").addEventListener("change", (event) => {
    const [file] = event.target.files;
    if (file) translateDocument(file);
    event.target.value = "";
  });

  // -- jobs -----------------------------------------------------------------------------------------------------------
  function cell(text) {
    const td = document.createElement("td");
    td.textContent = text;
    return td;
  }

  // Results need the key when the server has keys, so they are fetched and handed to the browser as a file.
  async function downloadResults(job) {
    const response = await fetch(job.results_url, { headers: authHeaders() });
    const url = URL.createObjectURL(await response.blob());
    const link = document.createElement("a");
    link.href = url;
    link.download = `${job.name}.results.jsonl`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function row(job) {
    const tr = document.createElement("tr");
    tr.dataset.job = job.id;
    const rate = job.cache_hit_rate == null ? "–" : `${Math.round(job.cache_hit_rate * 100)}%`;
    const eta = job.eta_seconds == null ? "–" : `${Math.ceil(job.eta_seconds)} s`;
    const results = document.createElement("td");
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "results.jsonl";
    button.addEventListener("click", () => downloadResults(job));
    results.append(button);
    tr.append(cell(job.name), cell(job.status), cell(`${job.done} / ${job.total}`), cell(String(job.failed)),
      cell(rate), cell(eta), results);
    return tr;
  }

  async function refreshJobs() {
    const response = await fetch("/v1/jobs", { headers: authHeaders() }).catch(() => null);
    if (!response || !response.ok) return;
    const jobs = await response.json();
    $("job-table").tBodies[0].replaceChildren(...jobs.map(row));
    $("jobs-empty").hidden = jobs.length > 0;
    const active = jobs.some((job) => job.status === "queued" || job.status === "running");
    if (active && !polling) polling = setInterval(refreshJobs, POLL_MS);
    if (!active && polling) {
      clearInterval(polling);
      polling = null;
    }
  }

  $("job-file").addEventListener("change", async (event) => {
    const [file] = event.target.files;
    event.target.value = "";
    if (!file) return;
    $("job-error").hidden = true;
    try {
      await post("/v1/jobs", file, { source: $("source").value });
    } catch (error) {
      $("job-error").textContent = `Could not start the job: ${error.message}`;
      $("job-error").hidden = false;
    }
    refreshJobs();
  });
  $("refresh-jobs").addEventListener("click", refreshJobs);
  refreshJobs();
})();
