/* mhpo-vl viewer: renders the JSON embedded in the page with DOM calls only (textContent, setAttribute),
   never innerHTML, so model and dataset text is always inert text. No network, no external files. */
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("viewer-data").textContent);
  const IMAGE_NAME = /^[0-9a-f]{8,64}\.(png|jpg)$/;
  /* Initial state from the address: index.html#step=3&color=weight&filter=wrong&view=compare&id=X&a=1&b=3 */
  const PARAMS = new URLSearchParams(window.location.hash.slice(1));

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }
  function fmt(x, digits) {
    if (x === null || x === undefined) return "n/a";
    if (typeof x !== "number") return String(x);
    return Math.abs(x) >= 1000 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(2) : x.toFixed(digits ?? 3);
  }
  function option(value, label, selected) {
    return el("option", {value: value, selected: selected ? "selected" : null, text: label});
  }
  function labelled(text, control) { return el("label", {class: "control"}, el("span", {text: text}), control); }
  function badge(text, kind) { return el("span", {class: "badge " + (kind || ""), text: text}); }

  /* ---- images: count loads and failures, then mark <body> ---- */
  const images = {total: 0, loaded: 0, failed: 0, built: false};
  function settle() {
    if (!images.built || images.loaded + images.failed < images.total) return;
    document.body.setAttribute("data-images-loaded", String(images.loaded));
    document.body.setAttribute("data-images-failed", String(images.failed));
  }
  function image(info, tracked) {
    if (!info || typeof info.file !== "string" || !IMAGE_NAME.test(info.file)) {
      return el("div", {class: "img-missing", text: "image not shown: " + ((info && info.error) || "no file") +
        (info && info.path ? " (" + info.path + ")" : "")});
    }
    const img = el("img", {alt: info.path || "image", title: info.path || null, decoding: "async"});
    if (tracked) {
      images.total += 1;
      img.addEventListener("load", () => { images.loaded += 1; settle(); }, {once: true});
      img.addEventListener("error", () => { images.failed += 1; img.classList.add("failed"); settle(); }, {once: true});
    }
    img.src = "images/" + info.file;
    return img;
  }
  function media(list, tracked) {
    const box = el("div", {class: "media"});
    for (const info of list || []) box.append(image(info, tracked));
    if (!box.childElementCount) box.append(el("div", {class: "no-image", text: "text only"}));
    return box;
  }
  function textBlock(text, cls) { return el("div", {class: cls || "text", text: text ?? ""}); }

  /* ---- token colouring (run view) ---- */
  function colour(q, v) {
    if (v === null || v === undefined || !q) return "";
    let t;
    if (q.diverging) {
      const m = Math.max(Math.abs(q.min), Math.abs(q.max)) || 1;
      t = Math.max(-1, Math.min(1, v / m));
      return t >= 0 ? `rgba(214,39,40,${(0.85 * t).toFixed(3)})` : `rgba(31,119,180,${(-0.85 * t).toFixed(3)})`;
    }
    const span = (q.max - q.min) || 1;
    t = Math.max(0, Math.min(1, (v - q.min) / span));
    if (q.reverse) t = 1 - t;
    return `rgba(148,103,189,${(0.85 * t).toFixed(3)})`;
  }
  function legend(q) {
    const box = el("div", {class: "legend", "data-quantity": q ? q.key : "none"});
    if (!q) { box.append(el("span", {text: "plain text (no colouring)"})); return box; }
    const stops = [];
    for (let i = 0; i <= 8; i++) {
      const v = q.diverging ? -Math.max(Math.abs(q.min), Math.abs(q.max)) * (1 - i / 4) : q.min + (q.max - q.min) * i / 8;
      stops.push(colour(q, q.diverging ? v : v) || "transparent");
    }
    const bar = el("span", {class: "bar"});
    bar.style.background = "linear-gradient(to right, " + stops.join(", ") + ")";
    box.append(el("span", {class: "lo", text: fmt(q.diverging ? -Math.max(Math.abs(q.min), Math.abs(q.max)) : q.min)}),
      bar, el("span", {class: "hi", text: fmt(q.diverging ? Math.max(Math.abs(q.min), Math.abs(q.max)) : q.max)}),
      el("span", {class: "what", text: q.label + ": " + q.help}));
    return box;
  }
  const squash = (t) => String(t ?? "").replace(/[\s\ufffd]+/g, "");
  function tokensMatch(r) {
    if (!Array.isArray(r.tokens) || !r.tokens.length) return false;
    return squash(r.tokens.join("")).includes(squash(r.text));
  }
  function tokenTitle(r, i) {
    const parts = ["token " + JSON.stringify(r.tokens[i])];
    for (const q of DATA.quantities) {
      if (Array.isArray(r[q.key])) parts.push(q.label + " " + fmt(r[q.key][i], 4));
    }
    return parts.join("  |  ");
  }
  function paintResponse(box, r, q) {
    box.textContent = "";
    if (!q || !tokensMatch(r) || !Array.isArray(r[q.key])) {
      box.append(r.text ?? "");
      if (q && !tokensMatch(r)) box.append(el("div", {class: "note", text: "(token strings do not match the text: shown uncoloured)"}));
      return;
    }
    const values = r[q.key];
    r.tokens.forEach((tok, i) => {
      const s = el("span", {class: "tok", title: tokenTitle(r, i), text: tok});
      const c = colour(q, values[i]);
      if (c) s.style.backgroundColor = c;
      box.append(s);
    });
  }

  /* ---- run view ---- */
  function runView(root) {
    const state = {step: DATA.steps.length ? DATA.steps[DATA.steps.length - 1].step : null,
      quantity: DATA.quantities.length ? DATA.quantities[0].key : "none", filter: "all"};
    if (DATA.steps.some((s) => String(s.step) === PARAMS.get("step"))) state.step = Number(PARAMS.get("step"));
    if (PARAMS.get("color") === "none" || DATA.quantities.some((q) => q.key === PARAMS.get("color"))) state.quantity = PARAMS.get("color");
    if (["all", "correct", "wrong", "truncated"].includes(PARAMS.get("filter"))) state.filter = PARAMS.get("filter");
    const quantity = () => DATA.quantities.find((q) => q.key === state.quantity) || null;
    const controls = el("div", {class: "controls", id: "controls"});
    const stepSelect = el("select", {id: "step-select"});
    const slider = el("input", {type: "range", id: "step-slider", min: 0, max: Math.max(0, DATA.steps.length - 1), step: 1,
      value: Math.max(0, DATA.steps.length - 1)});
    DATA.steps.forEach((s, i) => stepSelect.append(option(String(s.step), "step " + s.step, s.step === state.step)));
    slider.value = String(Math.max(0, DATA.steps.findIndex((s) => s.step === state.step)));
    const qSelect = el("select", {id: "quantity-select"});
    for (const q of DATA.quantities) qSelect.append(option(q.key, q.label, q.key === state.quantity));
    qSelect.append(option("none", "none (plain text)", state.quantity === "none"));
    const fSelect = el("select", {id: "filter-select"});
    for (const [v, l] of [["all", "all responses"], ["correct", "correct"], ["wrong", "wrong"], ["truncated", "truncated"]]) fSelect.append(option(v, l, v === state.filter));
    const legendBox = el("div", {id: "legend-box"});
    controls.append(labelled("Step", stepSelect), slider, labelled("Colour tokens by", qSelect), labelled("Show", fSelect), legendBox);
    root.append(el("h2", {text: "Rollouts"}), controls);
    if (!DATA.steps.length) root.append(el("p", {class: "note", text: DATA.empty_note || "No logged rollouts."}));

    const sections = new Map();
    const responseBoxes = [];
    for (const s of DATA.steps) {
      const sec = el("section", {class: "step", "data-step": s.step, hidden: s.step !== state.step ? "hidden" : null});
      sec.append(el("h3", {text: `Step ${s.step}: ${s.prompts.length} prompt(s)`}));
      for (const p of s.prompts) {
        const art = el("article", {class: "prompt", "data-prompt-id": p.id});
        const head = el("div", {class: "prompt-head"}, el("span", {class: "pid", text: "id " + p.id}),
          el("span", {class: "ans", text: "reference: " + p.answer}), el("span", {class: "type", text: p.answer_type || ""}));
        const list = el("div", {class: "responses"});
        const sorted = [...p.responses].sort((a, b) => (b.reward ?? -Infinity) - (a.reward ?? -Infinity));
        for (const r of sorted) {
          const comps = Object.entries(r.components || {}).map(([k, v]) => k + " " + fmt(v, 2)).join(", ");
          const meta = el("div", {class: "meta"}, badge(r.correct ? "correct" : "wrong", r.correct ? "ok" : "bad"),
            r.truncated ? badge("truncated", "warn") : null,
            el("span", {text: `#${r.index}  reward ${fmt(r.reward, 3)}` + (comps ? ` (${comps})` : "") +
              `  advantage ${fmt(r.advantage, 3)}  ${r.length} tokens`}));
          const box = el("div", {class: "text"});
          const div = el("div", {class: "response", "data-sample": `${s.step}/${p.id}/${r.index}`,
            "data-correct": r.correct ? "1" : "0", "data-truncated": r.truncated ? "1" : "0"}, meta, box);
          box.textContent = r.text ?? "";
          responseBoxes.push({step: s.step, box: box, r: r, div: div});
          list.append(div);
        }
        art.append(head, el("div", {class: "prompt-body"}, media(p.images, true),
          el("div", {class: "prompt-main"}, textBlock(p.prompt, "prompt-text"), list)));
        sec.append(art);
      }
      sections.set(s.step, sec);
      root.append(sec);
    }

    /* side by side: one prompt at two steps */
    const cmp = el("section", {class: "compare", id: "compare"});
    const byId = new Map();
    for (const s of DATA.steps) for (const p of s.prompts) {
      if (!byId.has(p.id)) byId.set(p.id, []);
      byId.get(p.id).push({step: s.step, prompt: p});
    }
    const repeated = [...byId.entries()].filter(([, v]) => v.length >= 2);
    const idSelect = el("select", {id: "compare-id"});
    const aSelect = el("select", {id: "compare-a"});
    const bSelect = el("select", {id: "compare-b"});
    const cols = el("div", {class: "columns"});
    cmp.append(el("h2", {text: "Same prompt at two steps"}));
    if (!repeated.length) {
      cmp.append(el("p", {class: "note", text: "No prompt was logged at two steps yet: a prompt comes back once the " +
        "sampler has gone through the dataset (or log more prompts per step)."}));
    } else {
      const wanted = repeated.some(([id]) => id === PARAMS.get("id")) ? PARAMS.get("id") : repeated[0][0];
      repeated.forEach(([id, v]) => idSelect.append(option(id, `id ${id} (${v.length} steps)`, id === wanted)));
      cmp.append(el("div", {class: "controls"}, labelled("Prompt", idSelect), labelled("Step A", aSelect), labelled("Step B", bSelect)), cols);
    }
    root.append(cmp);
    function fillSteps() {
      const occ = byId.get(idSelect.value) || [];
      aSelect.textContent = ""; bSelect.textContent = "";
      const has = (v) => occ.some((o) => String(o.step) === v);
      const a = has(PARAMS.get("a")) ? PARAMS.get("a") : String(occ[0].step);
      const b = has(PARAMS.get("b")) ? PARAMS.get("b") : String(occ[occ.length - 1].step);
      occ.forEach((o) => { aSelect.append(option(String(o.step), "step " + o.step, String(o.step) === a));
        bSelect.append(option(String(o.step), "step " + o.step, String(o.step) === b)); });
    }
    function renderCompare() {
      if (!repeated.length) return;
      cols.textContent = "";
      const occ = byId.get(idSelect.value) || [];
      for (const sel of [aSelect, bSelect]) {
        const o = occ.find((x) => String(x.step) === sel.value);
        if (!o) continue;
        const col = el("div", {class: "column"}, el("h3", {text: "step " + o.step}));
        col.append(media(o.prompt.images, false), textBlock(o.prompt.prompt, "prompt-text"));
        for (const r of [...o.prompt.responses].sort((a, b) => (b.reward ?? -Infinity) - (a.reward ?? -Infinity))) {
          const box = el("div", {class: "text"});
          paintResponse(box, r, quantity());
          col.append(el("div", {class: "response", "data-compare": `${o.step}/${o.prompt.id}/${r.index}`},
            el("div", {class: "meta"}, badge(r.correct ? "correct" : "wrong", r.correct ? "ok" : "bad"),
              r.truncated ? badge("truncated", "warn") : null,
              el("span", {text: `reward ${fmt(r.reward, 3)}  advantage ${fmt(r.advantage, 3)}`})), box));
        }
        cols.append(col);
      }
    }

    function apply() {
      const q = quantity();
      legendBox.textContent = "";
      legendBox.append(legend(q));
      for (const [step, sec] of sections) {
        if (step === state.step) sec.removeAttribute("hidden"); else sec.setAttribute("hidden", "hidden");
      }
      for (const item of responseBoxes) {
        const r = item.r;
        const show = state.filter === "all" || (state.filter === "correct" && r.correct) ||
          (state.filter === "wrong" && !r.correct) || (state.filter === "truncated" && r.truncated);
        if (show) item.div.removeAttribute("hidden"); else item.div.setAttribute("hidden", "hidden");
        if (item.step === state.step) paintResponse(item.box, r, q);
      }
      renderCompare();
    }
    stepSelect.addEventListener("change", () => { state.step = Number(stepSelect.value); slider.value = String(stepSelect.selectedIndex); apply(); });
    slider.addEventListener("input", () => { stepSelect.selectedIndex = Number(slider.value); state.step = Number(stepSelect.value); apply(); });
    qSelect.addEventListener("change", () => { state.quantity = qSelect.value; apply(); });
    fSelect.addEventListener("change", () => { state.filter = fSelect.value; apply(); });
    idSelect.addEventListener("change", () => { fillSteps(); renderCompare(); });
    aSelect.addEventListener("change", renderCompare);
    bSelect.addEventListener("change", renderCompare);
    if (repeated.length) fillSteps();
    if (PARAMS.get("view") === "compare") {
      for (const e of [document.getElementById("header"), controls, ...sections.values()]) if (e) e.setAttribute("data-collapsed", "1");
      cmp.prepend(legendBox);
    }
    apply();
  }

  /* ---- eval view ---- */
  function evalView(root) {
    const runs = DATA.runs;
    const state = {benchmark: "all", filter: "all", subsets: {}};
    if (DATA.benchmarks.includes(PARAMS.get("benchmark"))) state.benchmark = PARAMS.get("benchmark");
    if (["all", "correct", "incorrect", "differ"].includes(PARAMS.get("filter"))) state.filter = PARAMS.get("filter");
    const controls = el("div", {class: "controls", id: "controls"});
    const bSelect = el("select", {id: "benchmark-select"});
    bSelect.append(option("all", "all benchmarks", state.benchmark === "all"));
    for (const b of DATA.benchmarks) bSelect.append(option(b, b, b === state.benchmark));
    const fSelect = el("select", {id: "filter-select"});
    const filters = [["all", "all samples"], ["correct", "correct"], ["incorrect", "incorrect"]];
    if (runs.length > 1) filters.push(["differ", runs[0].label + " and " + runs[1].label + " disagree"]);
    for (const [v, l] of filters) fSelect.append(option(v, l, v === state.filter));
    controls.append(labelled("Benchmark", bSelect), labelled("Show", fSelect));
    const subsetSelects = [];
    for (const [name, values] of Object.entries(DATA.subsets)) {
      const s = el("select", {"data-subset": name});
      s.append(option("all", "all", true));
      for (const v of values) s.append(option(v, v, false));
      s.addEventListener("change", () => { state.subsets[name] = s.value; apply(); });
      subsetSelects.push(s);
      controls.append(labelled(name, s));
    }
    const count = el("span", {class: "count", id: "shown-count"});
    controls.append(count);
    root.append(el("h2", {text: "Samples"}), controls);
    const items = [];
    for (const it of DATA.items) {
      const art = el("article", {class: "prompt", "data-benchmark": it.benchmark, "data-prompt-id": it.id});
      const head = el("div", {class: "prompt-head"}, el("span", {class: "pid", text: it.benchmark + " · id " + it.id}),
        el("span", {class: "ans", text: "reference: " + (it.answer ?? "(not loaded)")}),
        ...Object.entries(it.subsets || {}).map(([k, v]) => el("span", {class: "type", text: k + ": " + v})));
      const columns = el("div", {class: runs.length > 1 ? "columns" : "single"});
      const sampleDivs = [];
      it.samples.forEach((list, ri) => {
        const col = el("div", {class: "column"}, runs.length > 1 ? el("h4", {text: runs[ri].label}) : null);
        if (!list.length) col.append(el("div", {class: "note", text: "no sample for this id"}));
        for (const s of list) {
          const extra = Object.entries(s.flags || {}).map(([k, v]) => badge(k + " " + (v ? "yes" : "no"), v ? "ok" : "bad"));
          const div = el("div", {class: "response", "data-sample": `${runs[ri].key}/${it.benchmark}/${it.id}/${s.sample}`,
            "data-correct": s.correct ? "1" : "0"},
            el("div", {class: "meta"}, badge(s.correct ? "correct" : "incorrect", s.correct ? "ok" : "bad"), ...extra,
              el("span", {text: `#${s.sample}  extracted: `}), el("code", {text: s.extracted ?? "(none)"}),
              el("span", {text: "  vs reference: "}), el("code", {text: it.answer ?? "(not loaded)"}),
              s.response_length !== undefined ? el("span", {text: `  ${s.response_length} long`}) : null),
            textBlock(s.response, "text"));
          sampleDivs.push({div: div, s: s});
          col.append(div);
        }
        columns.append(col);
      });
      art.append(head, el("div", {class: "prompt-body"}, media(it.images, true),
        el("div", {class: "prompt-main"}, textBlock(it.prompt ?? "(prompt not loaded: pass --data-dir)", "prompt-text"), columns)));
      items.push({art: art, it: it, sampleDivs: sampleDivs});
      root.append(art);
    }
    function meanCorrect(list) { return list.length ? list.reduce((a, s) => a + (s.correct ? 1 : 0), 0) / list.length : -1; }
    function apply() {
      let shown = 0;
      for (const {art, it, sampleDivs} of items) {
        let visible = state.benchmark === "all" || it.benchmark === state.benchmark;
        for (const [name, value] of Object.entries(state.subsets)) {
          if (value !== "all" && String((it.subsets || {})[name]) !== value) visible = false;
        }
        if (state.filter === "differ") visible = visible && it.samples.length > 1 && meanCorrect(it.samples[0]) !== meanCorrect(it.samples[1]);
        let any = false;
        for (const {div, s} of sampleDivs) {
          const ok = state.filter === "all" || state.filter === "differ" || (state.filter === "correct" ? s.correct : !s.correct);
          if (ok) { div.removeAttribute("hidden"); any = true; } else div.setAttribute("hidden", "hidden");
        }
        visible = visible && any;
        if (visible) { art.removeAttribute("hidden"); shown += 1; } else art.setAttribute("hidden", "hidden");
      }
      count.textContent = `${shown} of ${items.length} prompts`;
    }
    bSelect.addEventListener("change", () => { state.benchmark = bSelect.value; apply(); });
    fSelect.addEventListener("change", () => { state.filter = fSelect.value; apply(); });
    apply();
  }

  const root = document.getElementById("app");
  if (DATA.kind === "run") runView(root); else evalView(root);
  images.built = true;
  settle();
  document.body.setAttribute("data-rendered", "1");
})();
