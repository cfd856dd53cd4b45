"""What a user typed (prompts, ids, descriptions, manifest problems), made literal for Streamlit's elements that
read Markdown (st.markdown, captions, alerts, headers, progress text): no link, image, HTML or formatting in it acts."""

from __future__ import annotations

import re

from pipeline.report.html import visible_controls  # bidi controls shown as <U+202E>, as in report.html

# CommonMark: "Any ASCII punctuation character may be backslash-escaped" (spec 0.31, 2.4 Backslash escapes), and an
# escaped character is literal text: no link, image, emphasis, HTML, autolink or math can start at it
_PUNCTUATION = re.compile(r"([!-/:-@\[-`{-~])")
# GitHub-flavoured Markdown also links bare URLs and e-mail addresses found in text *after* escapes are resolved
# (mdast-util-gfm-autolink-literal: "https://", "www.", "x@y.z", "mailto:", "xmpp:"), so escaping alone leaves them
# live: an invisible WORD JOINER (U+2060) inside each such marker stops the match and shows the same characters.
_AUTOLINK = re.compile(r"(?i)(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?<=@)|(?<=\bmailto)(?=:)|(?<=\bxmpp)(?=:)")
JOINER = "\u2060"
LIMIT = 300  # characters of one value shown inline (the full text stays in the report and its file)


def literal(value: object, *, limit: int | None = LIMIT) -> str:
    """`value` as Markdown that shows exactly its characters (cut to `limit`, bidi controls shown as <U+202E>)."""
    text = "" if value is None else str(value)
    if limit is not None and len(text) > limit:
        text = text[:limit] + "…"
    text = visible_controls(text).replace("\r", " ").replace("\n", " ")
    return _PUNCTUATION.sub(r"\\\1", _AUTOLINK.sub(JOINER, text))
