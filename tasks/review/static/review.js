// The review page: a queue on the left, one item on the right, keyboard-first.
// Every piece of text from a run is set with textContent, never as HTML.
"use strict";

const TOKEN = document.querySelector('meta[name="s2s-token"]').content;
const state = { runs: [], items: [], shown: [], current: -1, editing: false };
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function pct(x) {
  return x === null || x === undefined ? "n/a" : (100 * x).toFixed(1) + "%";
}

async function load(keep) {
  const response = await fetch("/api/items", { cache: "no-store" });
  const data = await response.json();
  state.runs = data.runs;
  state.items = data.items;
  const select = $("f-run");
  if (select.options.length === 1) {
    for (const run of data.runs) {
      const option = el("option", run.name);
      option.value = String(run.index);
      select.appendChild(option);
    }
  }
  applyFilters(keep);
}

function matches(item) {
  const run = $("f-run").value, kind = $("f-kind").value;
  const show = $("f-state").value, text = $("f-text").value.trim().toLowerCase();
  if (run !== "" && String(item.run) !== run) return false;
  if (kind && item.kind !== kind) return false;
  if (show === "pending" && item.decision) return false;
  if (show === "done" && !item.decision) return false;
  if ($("f-flagged").checked && item.flags.length === 0) return false;
  if (text) {
    const hay = [item.utt_id, item.reference || "", item.hypothesis || ""]
      .join(" ").toLowerCase();
    if (!hay.includes(text)) return false;
  }
  return true;
}

function key(item) { return item.run + "/" + item.utt_id; }

function applyFilters(keep) {
  const before = state.shown[state.current];
  state.shown = state.items.filter(matches);
  $("count").textContent = state.shown.length + " of " + state.items.length + " items";
  const list = $("queue");
  list.replaceChildren();
  state.shown.forEach((item, i) => {
    const li = el("li");
    li.dataset.key = key(item);
    li.appendChild(el("span", item.utt_id));
    li.appendChild(el("span", " " + item.kind + " WER " + pct(item.wer)));
    if (item.decision) li.appendChild(el("span", " " + item.decision, "done"));
    for (const flag of item.flags) li.appendChild(el("span", flag, "flag"));
    li.addEventListener("click", () => select(i));
    list.appendChild(li);
  });
  let index = 0;
  if (keep && before) {
    const found = state.shown.findIndex((it) => key(it) === key(before));
    index = found >= 0 ? found : Math.min(state.current, state.shown.length - 1);
  }
  select(state.shown.length ? Math.max(0, index) : -1);
}

function renderDiff(node, diff) {
  node.replaceChildren();
  for (const part of diff) {
    if (part.op === "equal") node.appendChild(el("span", part.ref));
    if (part.op === "delete") node.appendChild(el("span", part.ref, "del"));
    if (part.op === "insert") node.appendChild(el("span", part.hyp, "ins"));
    if (part.op === "replace") {
      node.appendChild(el("span", part.ref, "sub-ref"));
      node.appendChild(el("span", part.hyp, "sub-hyp"));
    }
    node.appendChild(document.createTextNode(" "));
  }
}

function timingTable(title, headers, rows) {
  const box = el("div");
  box.appendChild(el("h3", title));
  const table = el("table");
  const head = el("tr");
  for (const h of headers) head.appendChild(el("th", h));
  table.appendChild(head);
  for (const row of rows) {
    const tr = el("tr");
    for (const cell of row) tr.appendChild(el("td", cell));
    table.appendChild(tr);
  }
  box.appendChild(table);
  return box;
}

function select(i) {
  state.current = i;
  state.editing = false;
  $("editor").hidden = true;
  document.querySelectorAll("#queue li").forEach((li, j) => {
    li.classList.toggle("current", j === i);
    if (j === i) li.scrollIntoView({ block: "nearest" });
  });
  const item = state.shown[i];
  $("item").hidden = !item;
  if (!item) return;
  const run = state.runs[item.run].name;
  $("item-title").textContent = item.utt_id;
  const meta = [run, item.kind === "tts" ? "synthesized" : "transcription",
    "WER " + pct(item.wer)];
  if (item.duration_s) meta.push(item.duration_s.toFixed(2) + " s");
  if (item.confidence !== null) meta.push("avg log-prob " + item.confidence.toFixed(2));
  if (item.seed !== null) meta.push("seed " + item.seed);
  meta.push(item.decision ? "decision: " + item.decision : "not reviewed");
  $("item-meta").textContent = meta.join(" · ");
  const params = new URLSearchParams({ run: String(item.run), utt_id: item.utt_id });
  if (item.seed !== null) params.set("seed", String(item.seed));
  $("player").src = "/api/audio?" + params.toString();
  const flags = $("item-flags");
  flags.replaceChildren();
  for (const flag of item.flags) flags.appendChild(el("span", flag, "flag"));
  if (item.error) flags.appendChild(el("span", " " + item.error));
  $("ref-label").textContent = item.kind === "tts" ? "Text asked for" : "Reference";
  $("hyp-label").textContent = item.kind === "tts" ? "Heard by the round-trip ASR" : "Hypothesis";
  $("reference").textContent = item.reference === null ? "(no reference)" : item.reference;
  $("hypothesis").textContent = item.hypothesis;
  renderDiff($("diff"), item.diff);
  const timing = $("timing");
  timing.replaceChildren();
  if (item.segments.length) {
    timing.appendChild(timingTable("Segments", ["start s", "end s", "text", "flag"],
      item.segments.map((s) => [s.start_s.toFixed(2), s.end_s.toFixed(2), s.text, s.flag || ""])));
  }
  if (item.words.length) {
    timing.appendChild(timingTable("Words", ["word", "start s", "end s", "p"],
      item.words.map((w) => [w.word, w.start_s.toFixed(2), w.end_s.toFixed(2),
        w.probability === null ? "" : w.probability.toFixed(2)])));
  }
  $("status").textContent = "";
}

async function decide(decision, text) {
  const item = state.shown[state.current];
  if (!item) return;
  const response = await fetch("/api/decision", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-S2S-Token": TOKEN },
    body: JSON.stringify({ run: item.run, utt_id: item.utt_id, decision, text }),
  });
  const answer = await response.json();
  if (!response.ok) {
    $("status").textContent = "not saved: " + answer.error;
    return;
  }
  item.decision = answer.decision;
  if (decision === "correct") item.reference = text;
  const next = state.current;
  await load(false);
  select(Math.min(next, state.shown.length - 1));
  $("status").textContent = item.utt_id + ": " + answer.decision + " saved";
}

function edit() {
  const item = state.shown[state.current];
  if (!item) return;
  if (item.kind === "tts") {
    $("status").textContent = "a synthesized item is accepted or rejected, not edited";
    return;
  }
  const editor = $("editor");
  editor.value = item.reference || "";
  editor.hidden = false;
  state.editing = true;
  editor.focus();
}

document.addEventListener("keydown", (event) => {
  if (state.editing) {
    if (event.key === "Escape") {
      state.editing = false;
      $("editor").hidden = true;
    } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      decide("correct", $("editor").value);
    }
    return;
  }
  const target = event.target;
  if (target.tagName === "INPUT" || target.tagName === "SELECT") return;
  const actions = {
    j: () => select(Math.min(state.current + 1, state.shown.length - 1)),
    k: () => select(Math.max(state.current - 1, 0)),
    a: () => decide("accept"),
    r: () => decide("reject"),
    e: () => edit(),
    p: () => { const p = $("player"); if (p.paused) p.play().catch(() => {}); else p.pause(); },
  };
  const action = actions[event.key];
  if (action && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    action();
  }
});

for (const id of ["f-run", "f-kind", "f-state", "f-flagged", "f-text"]) {
  $(id).addEventListener("input", () => applyFilters(true));
}
$("filters").addEventListener("submit", (event) => event.preventDefault());
load(false);
