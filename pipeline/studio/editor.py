"""The Manifest page's YAML editor: a Streamlit components-v2 element that sends the text to Python as it is typed
(debounced) and marks the lines that Python's check found problems on."""

from __future__ import annotations

from collections.abc import Callable, Iterable, MutableMapping
from typing import Any

import streamlit as st

from pipeline.errors import Problem
from pipeline.studio.plain import literal

DEBOUNCE_MS = 300  # one rerun per pause in typing, not one per key

_HTML = """
<div class="editor">
  <div class="gutter" aria-hidden="true"></div>
  <textarea aria-label="Manifest YAML" spellcheck="false" wrap="off" autocapitalize="off" autocomplete="off"></textarea>
</div>
"""

# The theme reaches the component as CSS custom properties named --st-<theme key in kebab case> (the frontend's
# BidiComponent bundle, streamlit/static/static/js/BidiComponent.*.js, maps e.g. codeFont to --st-code-font).
_CSS = """
.editor { display: flex; height: 26rem; overflow: hidden; border: 1px solid var(--st-border-color);
  border-radius: var(--st-base-radius); background: var(--st-secondary-background-color);
  font-family: var(--st-code-font); font-size: var(--st-code-font-size); line-height: 1.5; }
.editor:focus-within { border-color: var(--st-primary-color); }
.gutter { overflow: hidden; padding: 0.5rem 0 2rem; text-align: right; color: var(--st-gray-text-color);
  user-select: none; }
.gutter div { padding: 0 0.6ch 0 1.2ch; }
.gutter .problem { background: var(--st-red-background-color); color: var(--st-red-text-color); font-weight: bold; }
textarea { flex: 1; margin: 0; padding: 0.5rem; border: 0; outline: none; resize: none; white-space: pre;
  overflow: auto; font: inherit; line-height: inherit; color: var(--st-text-color); background: transparent; }
"""

# Streamlit runs this function again whenever `data` changes, but re-inserts the HTML only when the HTML or CSS
# change (the BidiComponent bundle's effects depend on data and html separately), so the textarea and its caret
# survive reruns. Its value is replaced only when Python raises `revision` (Load); what the user types is never
# overwritten by a rerun that answers an older keystroke.
_JS = """
const editors = new WeakMap();  // per textarea: the revision shown, the text last sent, the pending send

function drawGutter(gutter, area, problems) {
  const lines = area.value.split("\\n").length;
  const notes = new Map();
  for (const p of problems) {
    const line = Math.min(Math.max(p.line, 1), lines);
    notes.set(line, [...(notes.get(line) || []), `line ${p.line}, column ${p.col}: ${p.message}`]);
  }
  const rows = [];
  for (let n = 1; n <= lines; n++) {
    const row = document.createElement("div");
    row.textContent = String(n);
    row.dataset.line = String(n);
    if (notes.has(n)) {
      row.className = "problem";
      row.title = notes.get(n).join("\\n");
    }
    rows.push(row);
  }
  gutter.replaceChildren(...rows);
  gutter.scrollTop = area.scrollTop;
}

export default function ({ data, parentElement, setStateValue }) {
  const area = parentElement.querySelector("textarea");
  const gutter = parentElement.querySelector(".gutter");
  let ed = editors.get(area);
  if (!ed) {
    ed = { revision: null, sent: null, timer: 0 };
    editors.set(area, ed);
  }
  if (data.revision !== ed.revision) {  // Python loaded new text on purpose: show it, drop any pending send
    clearTimeout(ed.timer);
    area.value = data.text;
    ed.revision = data.revision;
    ed.sent = data.text;
  }
  const send = () => {
    clearTimeout(ed.timer);
    if (area.value === ed.sent) return;
    ed.sent = area.value;
    // the revision tells Python which loaded text this edit was typed into
    setStateValue("edit", { text: area.value, revision: ed.revision });
  };
  // handlers are assigned, not added: this function runs once per rerun and must not stack listeners
  area.oninput = () => {
    drawGutter(gutter, area, data.problems);
    clearTimeout(ed.timer);
    ed.timer = setTimeout(send, data.debounce_ms);
  };
  area.onblur = send;
  area.onscroll = () => { gutter.scrollTop = area.scrollTop; };
  area.setAttribute("aria-invalid", String(data.problems.length + data.elsewhere > 0));
  drawGutter(gutter, area, data.problems);
}
"""

# Registered once, at import (Streamlit's docs: don't re-register per mount); AppTest's fresh runtimes pick the
# definition up at mount (components/v2/__init__.py, _ensure_component_on_active_runtime).
_EDITOR = st.components.v2.component("campaign_manifest_editor", html=_HTML, css=_CSS, js=_JS)


def revision_key(text_key: str) -> str:
    return f"{text_key}.revision"


def in_data_file(problem: Problem, *, manifest_file: str) -> bool:
    """A problem found in a data file behind `variables: {x: {from: ...}}` (its `file` is that file, its line and
    column are there), not on a line of the manifest being edited."""
    return problem.file != manifest_file


def problem_text(problem: Problem, *, manifest_file: str) -> str:
    """Where a problem is and what it is, as the page lists it. A manifest problem names its line; a data-file
    problem names the file, its row (CSV, XLSX) or line (JSON), the column and the field, since the manifest has
    no line to point at."""
    return _problem(problem, manifest_file, str)


def problem_markdown(problem: Problem, *, manifest_file: str) -> str:
    """problem_text as Markdown whose user-given parts (file, field, message) show as typed."""
    return _problem(problem, manifest_file, literal)


def _problem(problem: Problem, manifest_file: str, quote: Callable[[str], str]) -> str:
    if not in_data_file(problem, manifest_file=manifest_file):
        return f"line {problem.line}, column {problem.col}: {quote(problem.path or '<document>')}: {quote(problem.message)}"
    unit = "line" if problem.file.lower().endswith(".json") else "row"
    field = f" ({quote(problem.path)})" if problem.path else ""
    return (f"data file {quote(problem.file)}, {unit} {problem.line}, column {problem.col}{field}: "
            f"{quote(problem.message)}")


def editor_data(*, text: str, revision: int, problems: Iterable[Problem], manifest_file: str) -> dict[str, Any]:
    """What the browser receives: the text to show when `revision` is new, the manifest's problems to mark on its
    lines, and how many problems are in data files instead (the text is invalid, but no line of it is marked)."""
    problems = list(problems)
    here = [p for p in problems if not in_data_file(p, manifest_file=manifest_file)]
    return {"text": text, "revision": revision, "debounce_ms": DEBOUNCE_MS,
            "problems": [{"line": p.line, "col": p.col, "message": f"{p.path or '<document>'}: {p.message}"}
                         for p in here],
            "elsewhere": len(problems) - len(here)}


def load_text(state: MutableMapping[Any, Any], *, text_key: str, text: str) -> None:
    """Python replaces the editor's text on purpose (Load, a reset): the browser shows it at the next render."""
    state[text_key] = text
    state[revision_key(text_key)] = int(state.get(revision_key(text_key), 0)) + 1


def take_edit(state: MutableMapping[Any, Any], *, text_key: str, edit: Any) -> bool:
    """Apply the text the browser sent, unless it was typed into text that has since been replaced (it would
    undo a Load that raced it). True when applied."""
    if not isinstance(edit, dict) or not isinstance(edit.get("text"), str):
        raise ValueError(f"manifest editor: expected an edit {{text, revision}} from the browser, got {edit!r}")
    if edit.get("revision") != state.get(revision_key(text_key), 0):
        return False
    state[text_key] = edit["text"]
    return True


def manifest_editor(*, text_key: str, problems: Iterable[Problem], manifest_file: str, key: str) -> None:
    """Mount the editor over `st.session_state[text_key]`, which stays the one source of the text: the edit
    callback writes each edit there before the script runs (callbacks run first), so the page reads it current."""
    state = st.session_state
    state.setdefault(revision_key(text_key), 0)

    def edited() -> None:
        take_edit(state, text_key=text_key, edit=state[key].get("edit"))

    # with a key, the element's identity is the key alone (bidi_component/main.py: key_as_main_identity=True), so
    # new data (problems, text) updates the same element instead of mounting a new one
    _EDITOR(key=key, data=editor_data(text=state[text_key], revision=state[revision_key(text_key)], problems=problems,
                                      manifest_file=manifest_file), on_edit_change=edited)
