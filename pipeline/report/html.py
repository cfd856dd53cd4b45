"""report.html: a self-contained page (inline CSS, relative links) rendered from the report dict, under a
Content-Security-Policy that loads nothing from outside its run folder."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html import escape
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import quote

from pipeline.report.sound import sound_html, translations_html

CSS = """
:root{--bg:#f6f7f9;--card:#fff;--ink:#1d2330;--mute:#667085;--line:#e4e7ec;--bad:#b42318;--badbg:#fef3f2;
--ok:#067647;--warn:#b54708;--warnbg:#fffaeb;--accent:#3538cd}
*{box-sizing:border-box}body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
background:var(--bg);color:var(--ink)}header{padding:24px 32px;background:#101828;color:#fff}
header h1{margin:0 0 4px;font-size:22px}header .sub{color:#d0d5dd}main{padding:24px 32px;max-width:1280px}
.pill{display:inline-block;padding:2px 10px;border-radius:999px;font-size:12px;font-weight:600;margin-right:6px}
.succeeded{background:#ecfdf3;color:var(--ok)}.partial,.interrupted{background:var(--warnbg);color:var(--warn)}
.failed{background:var(--badbg);color:var(--bad)}.awaiting-approval{background:#eef4ff;color:var(--accent)}
.rejected,.expired,.replaced{background:var(--badbg);color:var(--bad)}.approved{background:#ecfdf3;color:var(--ok)}
.unreviewed{background:var(--line);color:var(--mute)}details.review{margin-top:8px}.gate{background:#eef4ff;border:1px solid #c7d7fe;
border-radius:12px;padding:12px 16px}.placeholder{background:var(--warnbg);color:var(--warn)}
.cached{background:#eef4ff;color:var(--accent)}.stats{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.stat{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:10px 16px;min-width:110px}
.stat b{display:block;font-size:20px}section{margin:28px 0}h2{font-size:18px;margin:0 0 12px}
.card{background:var(--card);border:1px solid var(--line);border-radius:12px;padding:16px;margin:0 0 16px}
.errors{background:var(--badbg);border:1px solid #fecdca;border-radius:12px;padding:12px 16px}
.errors li{margin:4px 0}.errors code{color:var(--bad)}video{max-width:100%;border-radius:8px;background:#000}
.formats{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-end}.formats figure{margin:0}
.formats video{max-height:360px}.formats figcaption{font-size:12px;color:#666}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(220px,1fr));gap:12px}
figure{margin:0}figure img{width:100%;border-radius:8px;border:1px solid var(--line);
background:repeating-conic-gradient(#eee 0 25%,#fff 0 50%) 50%/16px 16px}
figcaption{font-size:12px;color:var(--mute);margin-top:4px}table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:6px 8px;border-bottom:1px solid var(--line);vertical-align:top}th{color:var(--mute);font-weight:600}
.template{border-left:4px solid var(--accent);padding-left:12px;margin:0 0 20px}.template h3{margin:0 0 8px}
.combo{background:#f2f4f7;color:var(--ink);font-weight:500}
.prompt{white-space:pre-wrap}.mute{color:var(--mute)}code{font:12px ui-monospace,Menlo,Consolas,monospace}
body,td,th,h1,h2,h3,code,figcaption,.sub{overflow-wrap:anywhere}pre{white-space:pre-wrap;overflow-wrap:anywhere}
"""
# Nothing but this page's own stylesheet (by its hash) and media from the page's own folder: no script, no font,
# no frame, no fetch, nothing from another origin ('self' for a file:// page is file: URLs; every path this page
# names is checked to stay inside the run folder, see _src). CSP Level 3 (W3C), <meta http-equiv> delivery.
CSP = ("default-src 'none'; img-src 'self'; media-src 'self'; "
       f"style-src 'sha256-{base64.b64encode(hashlib.sha256(CSS.encode()).digest()).decode()}'; "
       "base-uri 'none'; form-action 'none'")
# Bidirectional controls reorder what follows them ("\u202egnp.exe" reads as "exe.png"): each is shown by its
# code instead (Unicode UAX #9's explicit embedding, override and isolate controls, and the implicit marks).
BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str) -> str:
    """`text` with each bidirectional control written as <U+202E>: seen, not obeyed."""
    return BIDI_CONTROLS.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)


def _e(v: Any) -> str:
    return escape(visible_controls("" if v is None else str(v)))


def _src(path: Any) -> str | None:
    """A path the report names, for src/href: only relative paths that stay inside the run folder (no scheme,
    no leading /, no ..), percent-encoded; None for anything else, which the page then leaves out."""
    text = path if isinstance(path, str) else ""
    parts = PurePosixPath(text).parts
    if (not text or "\\" in text or text.startswith("/") or not parts or ":" in parts[0]
            or any(p in ("..", ".", "") for p in text.split("/")) or any(ord(c) < 32 for c in text)):
        return None
    return escape(quote(text, safe="/-._~()!*'@,;=+&$"))


def _pill(text: str, cls: str) -> str:
    return f'<span class="pill {escape(str(cls))}">{_e(text)}</span>'


def render_html(report: dict[str, Any]) -> str:
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}"><meta name=referrer content=no-referrer>',
        '<meta name=viewport content="width=device-width,initial-scale=1">',
        f"<title>{_e(report['campaign'])} — {_e(report['run_id'])}</title><style>{CSS}</style></head><body>",
        f"<header><h1>{_e(report['campaign'])}</h1><div class=sub>{_e(report.get('description'))}</div>",
        f"<div class=sub>run {_e(report['run_id'])} · {_e(report.get('started'))} · {_e(report.get('duration_s'))} s</div></header><main>",
        f"<p>{_pill(report['status'], report['status'])}"
        + " ".join(_pill(f"{k}: {v}", "cached") for k, v in (report.get("backends") or {}).items()) + "</p>",
    ]
    if report.get("errors"):
        items = "".join(f"<li><code>{_e(e['job'])}</code> <b>{_e(e['error'])}</b>: {_e(e['message'])}</li>"
                        for e in report["errors"])
        parts.append(f'<section class=errors id=errors><h2>{len(report["errors"])} error(s)</h2><ul>{items}</ul></section>')
    replaced = (report.get("review") or {}).get("replaces") or []
    if replaced:  # a regenerate run: what it made anew, and the versions it replaced
        items = "".join(f"<li><code>{_e(r.get('item'))}</code> of run {_e(r.get('run_id'))}, asked by {_e(r.get('by'))} "
                        f"at {_e(r.get('time'))}: {_e(json.dumps(r.get('asked') or {}))}"
                        + (f" — <q>{_e(r.get('note'))}</q>" if r.get("note") else "") + "</li>"
                        for r in replaced if isinstance(r, dict))
        parts.append(f"<section id=replaces><h2>Regenerated</h2><p>This run replaces:</p><ul>{items}</ul></section>")
    approval = report.get("approval") or {}
    if report.get("status") == "awaiting-approval":
        remaining = approval.get("remaining_usd")
        parts.append(
            "<section class=gate id=approval><h2>Awaiting approval</h2><p>Prompt enhancement and image edits are done; "
            "no clip has been rendered. Review the enhanced prompts and the edited images below, then run "
            f"<code>campaign approve {_e(report['campaign'])} --run {_e(report['run_id'])}</code> (or "
            f"<code>campaign reject ...</code>). Still to spend if approved: "
            f"{'$' + format(remaining, ',.2f') if isinstance(remaining, (int, float)) else 'unknown'}"
            f"{', until ' + _e(approval['expires']) if approval.get('expires') else ''}.</p></section>")
    parts.append(_webhook(report.get("webhook")))
    jobs = report.get("jobs", {})
    parts.append('<div class=stats>' + "".join(
        f'<div class=stat><b>{_e(jobs.get(k, 0))}</b>{k}</div>' for k in ("total", "executed", "cached", "failed", "skipped",
                                                                          "pending") if k in jobs or k != "pending")
        + _cost_stat(report.get("cost") or {}) + _budget_stat(report.get("budget") or {}) + "</div>")

    if report.get("videos"):
        parts.append("<section id=videos><h2>Videos</h2>")
        parts.extend(_by_template(report["videos"], _video))
        parts.append("</section>")
    if report.get("images"):
        parts.append("<section id=images><h2>Images</h2>")
        parts.extend(_by_template(report["images"], _image))
        parts.append("</section>")
    parts.append(translations_html(report.get("translations") or []))
    parts.append(_credentials(report.get("credentials") or {}))
    cost = report.get("cost") or {}
    if cost.get("items"):
        rows = "".join(f"<tr><td>{_e(i['what'])}</td><td>{_e(i['count'])}</td><td>${i['usd']:.4f}</td>"
                       f"<td class=mute>{_e(i.get('basis'))}</td></tr>" for i in cost["items"])
        parts.append(f"<section id=cost><h2>Estimated cloud cost</h2><div class=card><table><tr><th>item</th><th>count</th>"
                     f"<th>USD</th><th>basis</th></tr>{rows}</table><p class=mute>{_e(cost.get('note'))}</p></div></section>")
    budget = report.get("budget") or {}
    if budget:
        limit = budget.get("limit_usd")
        unknowns = "".join(f"<li>{_e(u)}</li>" for u in budget.get("unknowns") or [])
        parts.append(
            "<section id=budget><h2>Budget</h2><div class=card><table><tr><th>estimate for what was not cached</th>"
            "<th>budget</th><th>manifest</th><th>deployment ceiling</th></tr>"
            f"<tr><td>{_money(budget.get('estimate_usd'))}</td><td>{_money(limit) if limit is not None else 'none'}</td>"
            f"<td>{_money(budget.get('max_usd'))}</td><td>{_money(budget.get('ceiling_usd'))}</td></tr></table>"
            + (f"<p class=mute>The estimate rests on unverified figures:</p><ul class=mute>{unknowns}</ul>" if unknowns else "")
            + "</div></section>")
    if report.get("job_results"):
        rows = "".join(f"<tr><td><code>{_e(r['job'])}</code></td><td>{_e(r['kind'])}</td><td>{_e(r['status'])}</td>"
                       f"<td>{r['seconds']:.2f}</td></tr>" for r in report["job_results"])
        parts.append(f"<section id=timings><h2>Timings</h2><details class=card><summary>{len(report['job_results'])} "
                     f"jobs, {_e(report.get('duration_s'))} s in all</summary><table><tr><th>job</th><th>kind</th>"
                     f"<th>status</th><th>seconds</th></tr>{rows}</table></details></section>")
    parts.append("<section><h2>Raw</h2><details class=card><summary>report.json</summary><pre><code>"
                 + _e(json.dumps({k: v for k, v in report.items() if k != 'job_results'}, indent=1, default=str))
                 + "</code></pre></details></section>")
    parts.append("</main></body></html>")
    return "".join(parts)


def _webhook(w: Any) -> str:
    """How the run's summary reached the manifest's (or the stack's) webhook, as text: every value is escaped."""
    if not isinstance(w, dict):
        return ""
    if w.get("ok"):
        what = f"delivered (HTTP {_e(w.get('status'))}) after {_e(w.get('attempts'))} attempt(s)"
    else:
        answer = f"; last answer HTTP {_e(w.get('status'))}" if w.get("status") is not None else ""
        what = f"<b>not delivered</b> after {_e(w.get('attempts'))} attempt(s): {_e(w.get('error'))}{answer}"
    return (f"<section id=webhook><h2>Webhook</h2><p><code>{_e(w.get('url'))}</code>: {what}, at {_e(w.get('time'))}; "
            f"delivery id <code>{_e(w.get('delivery_id'))}</code></p></section>")


def _credentials(section: dict[str, Any]) -> str:
    """Each delivered file's Content Credentials: signed (and by what), unsigned (`credentials: off`) or failed."""
    files = section.get("files") or {}
    if not files:
        return ""
    signer = section.get("signer") or {}
    head = ("off (credentials: off): files are delivered unsigned" if not section.get("enabled") else
            f"signed by <code>{_e(signer.get('subject'))}</code> ({_e(signer.get('kind'))})")
    warn = f"<p class='pill placeholder'>{_e(signer['note'])}</p>" if signer.get("note") else ""
    cls = {"signed": "succeeded", "failed": "failed", "unsigned": "placeholder"}
    rows = "".join(f"<tr><td><a href='{_e(path)}'>{_e(path)}</a></td><td>{_pill(st.get('state', '?'), cls.get(st.get('state'), ''))}"
                   f"</td><td class=mute>{_e(st.get('reason') or (st.get('digital_source_type') or '').rsplit('/', 1)[-1])}</td></tr>"
                   for path, st in files.items())
    return (f"<section id=credentials><h2>Content Credentials</h2><div class=card><p>{head}</p>{warn}<table><tr>"
            f"<th>file</th><th>state</th><th>source type / reason</th></tr>{rows}</table></div></section>")


def _by_template(items: list[dict[str, Any]], render: Any) -> list[str]:
    """Items in report order; the variants of one template together under its heading, where the first stood."""
    out: list[str] = []
    done: set[str] = set()
    for item in items:
        template = item.get("template")
        if not template:
            out.append(render(item))
            continue
        if template in done:
            continue
        done.add(template)
        members = [x for x in items if x.get("template") == template]
        names = " × ".join(_e(k) for k in (members[0].get("combination") or {}))
        failed = sum(bool(x.get("errors")) for x in members)
        flag = _pill(f"{failed} with errors", "failed") if failed else _pill("all made", "succeeded")
        out.append(f'<div class=template data-template="{_e(template)}"><h3><code>{_e(template)}</code> '
                   f'<span class=mute>{len(members)} variant(s) over {names}</span> {flag}</h3>'
                   + "".join(render(x) for x in members) + "</div>")
    return out


def _variant_head(item: dict[str, Any]) -> str:
    """The combination as pills after the id, and the variant's own errors under it."""
    combo = "".join(_pill(f"{k}={v}", "combo") for k, v in (item.get("combination") or {}).items())
    errors = "".join(f"<li><code>{_e(e['job'])}</code> <b>{_e(e['error'])}</b>: {_e(e['message'])}</li>"
                     for e in item.get("errors") or [])
    return combo + (f"<ul class=errors>{errors}</ul>" if errors else "")


def _money(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, (int, float)) else "—"


def _budget_stat(budget: dict[str, Any]) -> str:
    if budget.get("limit_usd") is None:
        return ""
    return f'<div class=stat><b>{_money(budget["limit_usd"])}</b>budget</div>'


def _cost_stat(cost: dict[str, Any]) -> str:
    if "total_usd" not in cost:
        return ""
    return f'<div class=stat><b>${cost["total_usd"]:.2f}</b>est. cloud cost</div>'


def _player(f: dict[str, Any], language: str | None) -> str:
    poster = f' poster="{_src(f.get("poster"))}"' if _src(f.get("poster")) else ""
    track = (f'<track kind=captions default src="{_src(f.get("captions"))}" srclang="{_e(language or "und")}" '
             f'label="captions ({_e(language or "und")})">' if _src(f.get("captions")) else "")
    label = f.get("format") or "clips' shape"
    how = " · ".join(x for x in (f"fit {_e(f['fit'])}" if f.get("fit") else "", "captions burned in" if f.get("burned") else "",
                                 _e(f.get("method"))) if x)
    video = (f'<video controls preload=metadata{poster} src="{_src(f.get("path"))}">{track}</video>'
             if _src(f.get("path")) else "")
    return (f'<figure class=format data-format="{_e(label)}">{video}<figcaption>{_e(label)} · {_e(f.get("width"))}×{_e(f.get("height"))}'
            f'{" · " + how if how else ""}{" · " + _pill("cached", "cached") if f.get("cached") else ""}</figcaption></figure>')


def _video(v: dict[str, Any]) -> str:
    head = f"<h3>{_e(v['id'])} {_pill(v['status'], 'succeeded' if v['status'] in ('executed', 'cached') else 'failed')}"
    if v.get("cached"):
        head += _pill("cached", "cached")
    head += "</h3>" + _variant_head(v)
    player = ""
    if v.get("formats"):  # one player per delivered format, each with its captions track
        player = "<div class=formats>" + "".join(_player(f, v.get("language")) for f in v["formats"]) + "</div>"
    elif _src(v.get("path")):
        poster = f' poster="{_src(v.get("poster"))}"' if _src(v.get("poster")) else ""
        player = f'<video controls preload=metadata{poster} src="{_src(v.get("path"))}"></video>'
    meta = (f"<p class=mute>{_e(v.get('duration_s'))} s (expected {_e(v.get('expected_duration_s'))} s) · "
            f"{_e(v.get('width'))}×{_e(v.get('height'))} · {_e(v.get('fps'))} fps · {_e(v.get('method'))}"
            f"{' · crossfade ' + _e(v['crossfade']) + ' s' if v.get('crossfade') else ''}"
            f"{' · continuity ' + _e(v['continuity']) if v.get('continuity') else ''}</p>")
    rows = []
    for c in v.get("clips", []):
        flags = (_pill("placeholder", "placeholder") if c.get("placeholder") else "") + (_pill("cached", "cached") if c.get("cached") else "")
        clip_link = f'<a href="{_src(c.get("path"))}">clip</a>' if _src(c.get("path")) else _pill(c["status"], "failed")
        enhanced = c.get("enhanced_prompt")
        if enhanced and c.get("enhancer") == "passthrough":
            enhanced_cell = "<span class=mute>passthrough: used as written</span>"
        elif enhanced:
            enhanced_cell = _e(enhanced) + (f' <span class="mute">({_e(c.get("enhancer"))})</span>' if c.get("enhancer") else "")
        else:
            enhanced_cell = "<span class=mute>not enhanced</span>"
        rows.append(
            f"<tr><td>{_e(c['shot'])}</td><td class=prompt>{_e(c['prompt'])}</td>"
            f"<td class=prompt>{enhanced_cell}"
            f"{' <span class=pill placeholder>trimmed</span>' if c.get('prompt_trimmed') or c.get('enhance_trimmed') else ''}</td>"
            f"<td>{_e(c['model'])}{' I2V' if c.get('i2v') else ''}<br>{_e(c['frames'])} f @ {_e(c['fps'])} fps<br>seed {_e(c['seed'])}</td>"
            f"<td>{_e(c.get('backend'))} {flags}</td><td>{clip_link}</td></tr>")
    table = ("<table><tr><th>#</th><th>prompt</th><th>enhanced prompt</th><th>model</th><th>backend</th><th></th></tr>"
             + "".join(rows) + "</table>")
    reviews = "".join(_review(c.get("review"), str(c.get("job"))) for c in v.get("clips", []) if isinstance(c, dict))
    return f"<div class=card>{head}{player}{meta}{sound_html(v)}{table}{_review(v.get('review'), str(v.get('job')))}{reviews}</div>"


def _review(entry: Any, job: str) -> str:
    """An asset's review history: one row per version (oldest first) with each decision, its note, who and when.
    Left out for an asset nobody has reviewed and that has had one version only."""
    if not isinstance(entry, dict) or not isinstance(entry.get("versions"), list):
        return ""
    versions = [v for v in entry["versions"] if isinstance(v, dict)]
    if len(versions) < 2 and not any(v.get("decisions") for v in versions):
        return ""
    rows = []
    for n, v in enumerate(versions, 1):
        made = ", ".join(f"{k} {val}" for k, val in (v.get("made_with") or {}).items() if k in ("seed", "prompt"))
        said = "<br>".join(f"{_e(d.get('decision'))} by {_e(d.get('by'))} at {_e(d.get('time'))}"
                           + (f": <q>{_e(d.get('note'))}</q>" if d.get("note") else "")
                           for d in v.get("decisions") or [] if isinstance(d, dict))
        rows.append(f"<tr><td>v{n}{' (this run)' if v.get('current') else ''}</td><td>{_e(v.get('run_id'))}</td>"
                    f"<td class=prompt>{_e(made)}</td><td>{_pill(str(v.get('status')), str(v.get('status')))}</td>"
                    f"<td>{said}</td></tr>")
    return (f'<details class=review open><summary>review of <code>{_e(job)}</code>: {_e(entry.get("status"))}</summary>'
            "<table><tr><th>version</th><th>run</th><th>made with</th><th>state</th><th>decisions</th></tr>"
            + "".join(rows) + "</table></details>")


def _ref(ref: Any) -> str:
    """{"asset": "sofa"} -> "asset sofa"; {"image": "x"} -> "image x"."""
    if isinstance(ref, dict) and len(ref) == 1:
        (kind, name), = ref.items()
        return f"{kind} {name}"
    return json.dumps(ref)


def _image(im: dict[str, Any]) -> str:
    head = f"<h3>{_e(im['id'])} {_pill(im['status'], 'succeeded' if im['status'] in ('executed', 'cached') else 'failed')}"
    if im.get("placeholder"):
        head += _pill("contains placeholder steps", "placeholder")
    head += "</h3>" + _variant_head(im) + f"<p class=mute>from {_e(_ref(im.get('source')))} · backend {_e(im.get('backend'))}</p>"
    figs = []
    if _src(im.get("source_path")):
        figs.append(f'<figure><img loading=lazy src="{_src(im.get("source_path"))}" alt="{_e(im["id"])} source">'
                    f"<figcaption><b>source</b><br>{_e(_ref(im.get('source')))}</figcaption></figure>")
    for i, s in enumerate(im.get("steps", []), 1):
        img = f'<img loading=lazy src="{_src(s.get("path"))}" alt="{_e(im["id"])} step {i}">' if _src(s.get("path")) else ""
        flag = _pill("placeholder", "placeholder") if s.get("placeholder") else ""
        params = ", ".join(f"{k}={v}" for k, v in (s.get("params") or {}).items())
        figs.append(f"<figure>{img}<figcaption><b>{i}. {_e(s['tool'])}</b> {flag}<br>{_e(params)}"
                    f"<br>{_e(s.get('note'))}</figcaption></figure>")
    return f"<div class=card>{head}<div class=grid>{''.join(figs)}</div>{_review(im.get('review'), str(im.get('job')))}</div>"
