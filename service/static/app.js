// The newsmt page: a thin client of the native /v1 API.
// Every piece of text that came from the user, a model or the server is put on the page with textContent, never
// as HTML, so an article containing markup is shown as the characters it is and nothing in it can run.
"use strict";

(() => {
  const RTL_LANGUAGES = new Set(["ar", "he"]);
  const ENDPOINTS = { translate: "/v1/translate", summarize: "/v1/summarize", both: "/v1/articles" };
  const BUSY_TEXT = { translate: "Translating…", summarize: "Summarizing…", both: "Translating and summarizing…" };
  const SUMMARY_ACTIONS = ["summarize", "both"];
  const names = new Intl.DisplayNames(["en"], { type: "language" });

  const $ = (id) => document.getElementById(id);
  const form = $("form");
  const text = $("text");
  const source = $("source");
  const apiKey = $("api-key");
  const alternatives = $("alternatives");
  const glossary = $("glossary");
  const terms = $("terms");
  const buttons = Object.fromEntries(Object.keys(ENDPOINTS).map((action) => [action, $(action)]));
  let busy = false;

  function languageName(code) {
    try {
      return names.of(code) || code;
    } catch {
      return code;  // not a BCP 47 code: show it as the server gave it
    }
  }

  function direction(code) {
    return RTL_LANGUAGES.has(code) ? "rtl" : "ltr";
  }

  // An explicit Arabic or Hebrew source makes the text area right-to-left; with detection, dir="auto" lets the
  // browser follow the first strong character of what was pasted.
  function applySourceDirection() {
    const chosen = source.value;
    text.dir = RTL_LANGUAGES.has(chosen) ? "rtl" : "auto";
    if (chosen === "auto") text.removeAttribute("lang");
    else text.lang = chosen;
  }

  function summariesUnavailable() {
    for (const action of SUMMARY_ACTIONS) buttons[action].disabled = true;
    $("summary-note").hidden = false;
  }

  // The summary routes exist only where the summarizer is installed. A GET on a POST-only route answers 405 when
  // the route exists and 404 when it does not, without running anything.
  async function probeSummaries() {
    const answers = await Promise.all(SUMMARY_ACTIONS.map((action) =>
      fetch(ENDPOINTS[action], { method: "GET" }).then((r) => r.status, () => 0)));
    if (answers.includes(404)) summariesUnavailable();
  }

  // Stored glossaries fill the Glossary choice; a server whose keys do not let this page list them simply has none
  // to offer, and inline terms still work.
  async function loadGlossaries() {
    const headers = apiKey.value ? { Authorization: `Bearer ${apiKey.value}` } : {};
    const listing = await fetch("/v1/glossaries", { headers }).then((r) => (r.ok ? r.json() : []), () => []);
    if (!Array.isArray(listing) || !listing.length) return;
    glossary.replaceChildren(new Option("None", ""), ...listing.map((g) => new Option(`${g.name} (${g.terms} terms)`,
      g.name)));
    show("glossary-field", true);
  }

  // Inline terms: "term<TAB>English" or "term = English" per line.
  function inlineTerms() {
    const pairs = {};
    for (const line of terms.value.split("\n")) {
      const match = /^(.+?)(?:\t|\s=\s)(.+)$/.exec(line.trim());
      if (match) pairs[match[1].trim()] = match[2].trim();
    }
    return Object.keys(pairs).length ? pairs : null;
  }

  function show(id, visible) {
    $(id).hidden = !visible;
  }

  function clearOutput() {
    show("error", false);
    show("summary-section", false);
    show("result", false);
    show("meta", false);
    show("alternatives-section", false);
    show("terms-report", false);
    show("low-note", false);
    $("pairs").tBodies[0].replaceChildren();
    $("meta").replaceChildren();
  }

  function setBusy(action) {
    busy = Boolean(action);
    form.setAttribute("aria-busy", String(busy));
    for (const button of Object.values(buttons)) button.classList.toggle("working", button === buttons[action]);
    $("status").textContent = action ? BUSY_TEXT[action] : "";
  }

  function showError(message) {
    $("error").textContent = message;
    show("error", true);
  }

  // Plain words for what went wrong; the server's own message (which states limits and install commands) follows.
  function explain(status, body, headers) {
    const error = body && typeof body.error === "object" && body.error ? body.error : {};
    const code = error.code || "";
    const detail = typeof error.message === "string" ? error.message : `the server answered ${status}`;
    switch (code) {
      case "unsupported_language": {
        const detected = /detected '([^']+)'/.exec(detail);
        const what = detected ? `This text looks like ${languageName(detected[1])}. ` : "";
        return `${what}newsmt translates only Arabic and Hebrew into English. If the language was detected wrongly, `
          + "choose Arabic or Hebrew under Source language and try again.";
      }
      case "input_too_large":
        return `The text is too long for this server. Translate it in parts. (${detail})`;
      case "empty_text":
        return "There is nothing to translate: the text is empty once ads, captions and other page clutter are "
          + "removed.";
      case "model_not_installed":
        return `The translation model for this language is not installed on this server, so it cannot translate `
          + `this text yet. Ask the administrator to install it. (${detail})`;
      case "model_load_failed":
        return `The model for this language is installed but could not be loaded. Ask the administrator to check `
          + `it. (${detail})`;
      case "overloaded": {
        const wait = headers.get("Retry-After");
        return `The server is busy right now. Try again${wait ? ` in ${wait} seconds` : " shortly"}.`;
      }
      case "timeout":
        return "The translation is taking longer than the server allows. It carries on in the background: "
          + "try again in a minute and it will come from the cache.";
      case "unauthorized":
        return "This server needs an API key. Enter it in the API key field and try again.";
      case "forbidden":
        return "The server did not accept that API key. Check it and try again.";
      default:
        return `Something went wrong: ${detail}`;
    }
  }

  function percent(part, whole) {
    return whole ? `${Math.round((100 * part) / whole)}%` : "n/a";
  }

  function renderPairs(paragraphs, language) {
    $("source-head").textContent = `Source (${languageName(language)})`;
    const rows = paragraphs.map((paragraph) => {
      const row = document.createElement("tr");
      const original = document.createElement("td");
      original.className = "src";
      original.lang = paragraph.language;
      original.dir = direction(paragraph.language);
      original.textContent = paragraph.source;
      const english = document.createElement("td");
      english.className = "tgt";
      english.lang = "en";
      english.dir = "ltr";
      const sentences = Array.isArray(paragraph.sentences) ? paragraph.sentences : [];
      if (sentences.length) {
        sentences.forEach((sentence, index) => {
          if (index) english.append(" ");
          if (sentence.low_confidence) {
            const marked = document.createElement("mark");
            marked.className = "low";
            marked.title = `The model was unsure of this sentence (score ${sentence.score.toFixed(2)}): check it `
              + "against the source.";
            marked.textContent = sentence.translation;
            english.append(marked);
          } else {
            english.append(sentence.translation);
          }
        });
      } else {
        english.textContent = paragraph.translation;
      }
      row.append(original, english);
      return row;
    });
    $("pairs").tBodies[0].replaceChildren(...rows);
    show("result", true);
  }

  function renderAlternatives(result) {
    if (!Array.isArray(result.alternatives)) return;
    $("alternative-list").replaceChildren(...result.alternatives.map((text) => {
      const item = document.createElement("li");
      item.textContent = text;
      return item;
    }));
    show("no-alternatives", !result.alternatives.length);
    show("alternatives-section", true);
  }

  function renderTerms(result) {
    if (!Array.isArray(result.glossary_terms)) return;
    const report = $("terms-report");
    const name = document.createElement("strong");
    name.textContent = "Glossary: ";
    const items = result.glossary_terms.map((term) => {
      const item = document.createElement("span");
      const complete = term.found === term.applied;
      item.className = complete ? "found" : "missing";
      item.textContent = `${term.source} → ${term.target} (${complete ? "in the translation" : `missing from ${
        term.applied - term.found} of ${term.applied} sentences`})`;
      return item;
    });
    if (!items.length) items.push("no term of the glossary occurs in this text");
    report.replaceChildren(name, ...items);
    show("terms-report", true);
  }

  function renderMeta(result, usage, chosenSource, latencyMs) {
    const items = [];
    if (result.detected_language) {
      const how = chosenSource === "auto" && result.language_confidence != null
        ? `detected, ${Math.round(result.language_confidence * 100)}% sure` : "chosen";
      items.push(["Language", `${languageName(result.detected_language)} (${how})`]);
    }
    const models = (result.models || []).map((m) => `${m.model_id} (revision ${String(m.revision).slice(0, 19)})`);
    if (result.summarizer && result.summarizer.engine) models.push(`summary: ${result.summarizer.engine}`);
    if (models.length) items.push(["Model", models.join("; ")]);
    if (Array.isArray(result.low_confidence)) {
      items.push(["Confidence", result.low_confidence.length
        ? `${result.low_confidence.length} sentence(s) to check, marked` : "no sentence below the threshold"]);
    }
    if (usage && usage.segments != null) {
      items.push(["Cache", `${usage.cache_hits} of ${usage.segments} sentences (${percent(usage.cache_hits,
        usage.segments)})`]);
    }
    const server = usage && usage.elapsed_ms != null ? `, server ${Math.round(usage.elapsed_ms)} ms` : "";
    items.push(["Latency", `${Math.round(latencyMs)} ms${server}`]);
    const meta = $("meta");
    meta.replaceChildren(...items.map(([label, value]) => {
      const item = document.createElement("span");
      item.dataset.meta = label.toLowerCase();
      const name = document.createElement("strong");
      name.textContent = `${label}: `;
      item.append(name, value);
      return item;
    }));
    show("meta", true);
  }

  function render(body, chosenSource, latencyMs) {
    const result = body && Array.isArray(body.results) ? body.results[0] : null;
    if (!result) {
      showError("The server answered in a shape this page does not understand.");
      return;
    }
    if (Array.isArray(result.paragraphs)) renderPairs(result.paragraphs, result.detected_language);
    show("low-note", Array.isArray(result.low_confidence) && result.low_confidence.length > 0);
    renderAlternatives(result);
    renderTerms(result);
    if (typeof result.summary === "string") {
      $("summary").textContent = result.summary;
      show("summary-section", true);
    }
    renderMeta(result, body.usage, chosenSource, latencyMs);
  }

  async function run(action) {
    if (busy || buttons[action].disabled) return;
    const article = text.value;
    clearOutput();
    if (!article.trim()) {
      showError("Paste an article first: the text box is empty.");
      text.focus();
      return;
    }
    const chosenSource = source.value;
    const payload = { text: article, source: chosenSource };
    if (action !== "summarize") {
      payload.options = { return_segments: true };
      const wanted = Number(alternatives.value);
      if (action === "translate" && wanted) payload.options.alternatives = wanted;
      const pinned = inlineTerms() || glossary.value || null;
      if (action === "translate" && pinned) payload.glossary = pinned;
    }
    const headers = { "Content-Type": "application/json" };
    if (apiKey.value) headers.Authorization = `Bearer ${apiKey.value}`;
    setBusy(action);
    const started = performance.now();
    try {
      let response;
      try {
        response = await fetch(ENDPOINTS[action], { method: "POST", headers, body: JSON.stringify(payload) });
      } catch {
        showError("Could not reach the server. Check that it is running and try again.");
        return;
      }
      const latencyMs = performance.now() - started;
      const body = await response.json().catch(() => null);
      if (response.ok) {
        render(body, chosenSource, latencyMs);
        return;
      }
      if (response.status === 404 && SUMMARY_ACTIONS.includes(action)) {
        summariesUnavailable();
        showError("This server does not offer summaries. Translate works as usual.");
        return;
      }
      if (response.status === 401 || response.status === 403) {
        show("key-field", true);
        apiKey.focus();
      }
      showError(explain(response.status, body, response.headers));
    } finally {
      setBusy(null);
    }
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    run("translate");
  });
  for (const action of SUMMARY_ACTIONS) buttons[action].addEventListener("click", () => run(action));
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      run("translate");
    }
  });
  source.addEventListener("change", applySourceDirection);
  applySourceDirection();
  probeSummaries();
  loadGlossaries();
})();
