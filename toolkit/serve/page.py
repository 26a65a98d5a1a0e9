"""The page at ``GET /``: each served model's card, and a form to try it.

One self-contained HTML document (inline CSS and JavaScript, nothing fetched from
elsewhere: the server may run where there is no internet). The card comes from
the file's own metadata: task, input tensor and columns, classes, the run and
time it was exported from, the tolerance it was verified to, and whether its
run's manifest vouched for its bytes. The form is built from the input record: a
field per column for a table-trained model (a list of the known categories for a
text column; a number may be left blank where the run recorded a fill value), a
file picker for an image-trained one, a field per number for a small plain input,
a JSON box otherwise. It posts to ``/predict/NAME`` with
``fetch`` and shows the answer ``tk predict --json`` would give.
"""

from __future__ import annotations

import math
from html import escape
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from toolkit.serve.model import ServedModel

FIELDS_UP_TO = 16  # a plain input this wide gets one field per number, else a JSON box


def model_card(model: ServedModel) -> dict[str, Any]:
    """What the page says about ``model``: a JSON-friendly dict of its metadata."""
    meta = {**model.full_meta, **model.meta}
    tolerance = meta.get("tolerance") or {}
    return {
        "name": model.name,
        "file": model.path,
        "format": meta.get("format"),
        "runtime": model.runner.name,
        "task": meta.get("task"),
        "input": meta.get("input"),
        "inputs": meta.get("inputs"),
        "feature_names": meta.get("feature_names"),
        "class_names": meta.get("class_names"),
        "model": (meta.get("model") or {}).get("name"),
        "dataset": (meta.get("dataset") or {}).get("name"),
        "run": meta.get("run"),
        "exported_at": meta.get("exported_at"),
        "exporter": meta.get("exporter"),
        "tk_version": meta.get("tk_version"),
        "weights_sha256": meta.get("weights_sha256"),
        "tolerance": tolerance or None,
        "manifest_checked": model.manifest_checked,
    }


def render_page(models: dict[str, ServedModel]) -> str:
    """The whole HTML document for ``models`` (one section each)."""
    sections = "\n".join(_section(model_card(m), m) for m in models.values())
    names = ", ".join(escape(n) for n in models)
    return PAGE.replace("{{title}}", f"tk serve: {names}").replace("{{sections}}", sections)


def _row(key: str, value: Any) -> str:
    if value in (None, "", []):
        return ""
    return f"<tr><th>{escape(key)}</th><td>{escape(str(value))}</td></tr>"


def _section(card: dict[str, Any], model: ServedModel) -> str:
    name = escape(card["name"])
    shape = "x".join(str(d) for d in (card["input"] or {}).get("shape", []))
    inp = card["input"] or {}
    tol = card["tolerance"]
    verified = (
        f"atol {tol.get('atol')}, rtol {tol.get('rtol')} against the eager model "
        "(tk export writes a file only once it passes, unless --no-verify)"
        if tol
        else "no tolerance recorded"
    )
    integrity = (
        "sha256 matches its run's manifest (checked at start)"
        if card["manifest_checked"]
        else "not listed in a run manifest (not checked)"
    )
    classes = card["class_names"]
    rows = "".join(
        [
            _row("task", card["task"]),
            _row("input", f"{inp.get('name')}: {inp.get('dtype')} {shape}"),
            _columns_row(card),
            _row("classes", ", ".join(map(str, classes)) if classes else None),
            _row("model", card["model"]),
            _row("dataset", card["dataset"]),
            _row("run", card["run"]),
            _row("exported", card["exported_at"]),
            _row("exporter", card["exporter"]),
            _row("file", f"{card['file']} ({card['format']}, {card['runtime']})"),
            _row("weights sha256", card["weights_sha256"]),
            _row("verified", verified),
            _row("integrity", integrity),
        ]
    )
    return f"""<section class="model" id="model-{name}">
<h2>{name}</h2>
<table class="card">{rows}</table>
<h3>Try it</h3>
{_form(card, model)}
<div class="answer" id="answer-{name}" aria-live="polite"></div>
</section>"""


def _columns_row(card: dict[str, Any]) -> str:
    inputs = card["inputs"] or {}
    if inputs.get("kind") == "table":
        parts = []
        for c in inputs["columns"]:
            if c["kind"] == "number":
                parts.append(f"{c['name']} (number)")
            else:
                parts.append(f"{c['name']} (category: {', '.join(map(str, c['categories']))})")
        return _row("columns", "; ".join(parts))
    if inputs.get("kind") == "image":
        h, w = inputs.get("size", ["?", "?"])
        mode, scale = inputs.get("mode", "RGB"), inputs.get("scale")
        return _row("images", f"{w}x{h} {mode}, scaled by {scale}")
    return ""


def _form(card: dict[str, Any], model: ServedModel) -> str:
    """The form for this model's input (see the module's docstring)."""
    name = escape(card["name"])
    inputs = card["inputs"] or {}
    kind = inputs.get("kind")
    fields = []
    if kind == "table":
        fills = inputs.get("fill") or {}
        for c in inputs["columns"]:
            col = escape(str(c["name"]))
            if c["kind"] == "number" and fills.get(c["name"]) is not None:
                # The run filled this column's gaps (fillna=mean): so does tk predict.
                hint = escape(f"blank: {fills[c['name']]:.6g}")
                box = f'<input type="number" step="any" name="{col}" placeholder="{hint}">'
            elif c["kind"] == "number":
                box = f'<input type="number" step="any" name="{col}" required>'
            else:
                opts = "".join(
                    f'<option value="{escape(str(v))}">{escape(str(v))}</option>'
                    for v in c["categories"]
                )
                box = f'<select name="{col}">{opts}</select>'
            fields.append(f"<label><span>{col}</span>{box}</label>")
    elif kind == "image":
        fields.append(
            '<label><span>image files</span><input type="file" name="file" '
            'accept="image/*" multiple required></label>'
        )
    else:
        width = math.prod(model.sample_shape)
        names = card["feature_names"] or []
        if width <= FIELDS_UP_TO:
            kind = "numbers"
            for i in range(width):
                label = escape(str(names[i])) if i < len(names) else f"x{i + 1}"
                fields.append(
                    f'<label><span>{label}</span><input type="number" step="any" '
                    f'name="x{i}" required></label>'
                )
        else:
            kind = "json"
            fields.append(
                f"<label><span>rows (JSON: a list of {width} numbers each)</span>"
                f'<textarea name="rows" rows="4" required placeholder="[[0, 0, ...]]"></textarea>'
                "</label>"
            )
    return (
        f'<form class="try" data-model="{name}" data-kind="{escape(str(kind))}">'
        + "".join(fields)
        + '<button type="submit">Predict</button></form>'
    )


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}}</title>
<style>
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f4f6f9; }
header { background: #1d2330; color: #fff; padding: .8rem 1.5rem; }
header h1 { font-size: 1.15rem; margin: 0; }
header a { color: #9cc3ff; margin-right: 1rem; font-size: .85rem; }
main { max-width: 52rem; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
section.model { background: #fff; border-radius: 8px; padding: .5rem 1.2rem 1.2rem;
  margin-top: 1rem; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
h2 { font-size: 1.1rem; margin: .6rem 0; } h3 { font-size: .95rem; margin: 1rem 0 .4rem; }
table.card { border-collapse: collapse; width: 100%; font-size: .85rem; }
table.card th { text-align: left; color: #5b6472; font-weight: 500; width: 9rem;
  vertical-align: top; padding: .15rem .5rem .15rem 0; }
table.card td { padding: .15rem 0; overflow-wrap: anywhere; }
form.try { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: flex-end; }
form.try label { display: flex; flex-direction: column; font-size: .8rem; color: #5b6472; }
form.try input, form.try select, form.try textarea { font: inherit; padding: .3rem .4rem;
  border: 1px solid #c4cad3; border-radius: 4px; min-width: 7rem; }
form.try textarea { width: 30rem; }
button { font: inherit; background: #2764d8; color: #fff; border: 0; border-radius: 4px;
  padding: .4rem 1.1rem; cursor: pointer; }
.answer { margin-top: .9rem; font-size: .9rem; }
.answer .error { color: #b3261e; }
.prediction { border-top: 1px solid #e3e6eb; padding: .4rem 0; }
.verdict { font-size: 1rem; } .verdict .class { font-weight: 600; }
.bars { display: grid; grid-template-columns: max-content 1fr 4.5rem; gap: .1rem .6rem;
  font-size: .8rem; margin-top: .3rem; align-items: center; }
.bar { height: .6rem; background: #2764d8; border-radius: 3px; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
</style>
</head>
<body>
<header><h1>{{title}}</h1>
<a href="/metrics">/metrics</a><a href="/v2/health/ready">/v2/health/ready</a></header>
<main>
{{sections}}
</main>
<script>
"use strict";
// Probabilities to 4 decimals: the digits Python's f"{p:.4f}" gives for the same float.
function fixed(v) { return Number(v).toFixed(4); }
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function body(form) {
  const kind = form.dataset.kind;
  if (kind === "image") {
    const data = new FormData();
    for (const f of form.elements.file.files) data.append("file", f, f.name);
    return { body: data };
  }
  let payload;
  if (kind === "table") {
    const record = {};
    for (const e of form.elements) {
      if (!e.name) continue;
      // A blank number is a gap (null), filled as tk predict fills it.
      if (e.type === "number") record[e.name] = e.value === "" ? null : Number(e.value);
      else record[e.name] = e.value;
    }
    payload = [record];
  } else if (kind === "numbers") {
    payload = [Array.from(form.elements).filter(e => e.name).map(e => Number(e.value))];
  } else {
    payload = JSON.parse(form.elements.rows.value);
  }
  return { body: JSON.stringify(payload), headers: { "Content-Type": "application/json" } };
}
function show(out, answer, names) {
  out.replaceChildren();
  for (const p of answer.predictions) {
    const div = el("div", "prediction");
    div.dataset.row = p.row;
    const verdict = el("div", "verdict");
    if (p.file) verdict.append(el("span", "file", p.file + ": "));
    if (p.values !== undefined) {
      verdict.append(el("span", "values", p.values.map(v => Number(v).toPrecision(6)).join(", ")));
      div.append(verdict);
      out.append(div);
      continue;
    }
    if (p.class !== undefined) verdict.append(el("span", "class", p.class), " ");
    verdict.append("(label ", el("span", "label", String(p.label)),
                   "), probability ", el("span", "probability", fixed(p.probability)));
    div.append(verdict);
    const bars = el("div", "bars");
    p.probabilities.forEach((q, i) => {
      bars.append(el("span", "name", names ? String(names[i]) : String(i)));
      const bar = el("div", "bar");
      bar.style.width = (100 * q).toFixed(1) + "%";
      const track = el("div");
      track.append(bar);
      bars.append(track, el("span", "num", fixed(q)));
    });
    div.append(bars);
    out.append(div);
  }
}
for (const form of document.querySelectorAll("form.try")) {
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = form.dataset.model;
    const out = document.getElementById("answer-" + name);
    out.replaceChildren(el("span", "pending", "..."));
    try {
      const res = await fetch("/predict/" + encodeURIComponent(name),
                              { method: "POST", ...body(form) });
      const answer = await res.json();
      if (!res.ok) throw new Error(answer.error || res.statusText);
      const meta = await (await fetch("/v2/models/" + encodeURIComponent(name))).json();
      show(out, answer, meta.parameters.class_names);
      out.dataset.done = "1";
    } catch (err) {
      out.replaceChildren(el("span", "error", String(err.message || err)));
      out.dataset.done = "1";
    }
  });
}
</script>
</body>
</html>
"""
