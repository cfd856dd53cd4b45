"""Translation (issue 25, `translate: true`) and captions timed sentence by sentence from the speech: located
manifest errors; translate jobs keyed and shared, and the voice keys that follow them; the Bedrock translator's
Converse request checked by botocore's model (Stubber) and its reply parsed strictly; the cloud's enhance step
carrying the translate jobs; sentence onsets found in audio with known timing; and one campaign run whose
WebVTT cues and burned captions are read back against the speech."""

from __future__ import annotations

import json
import re
import textwrap
import wave
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from pipeline.backends.translate_bedrock import SYSTEM_PROMPT, BedrockTranslator
from pipeline.backends.voice_local import EspeakVoiceBackend
from pipeline.cli import main
from pipeline.errors import JobFailed, ManifestInvalid
from pipeline.manifest.campaign import load_manifest_text
from pipeline.manifest.formats import sentences
from pipeline.media.frames import decode
from pipeline.media.mix import sentence_onsets, speech_bounds
from pipeline.plan.build import KeySource, Plan, build_plan
from pipeline.plan.cost import estimate_cost
from pipeline.report.sound import translations_html

ROOT = Path(__file__).resolve().parents[1]
needs_espeak = pytest.mark.skipif(not EspeakVoiceBackend()._exe, reason="espeak-ng is not installed (make install)")

HEAD = """\
campaign: translate-check
defaults: {enhance: false, video: {model: cogvideox-5b, frames: 33}}
videos:
"""


def _load(body: str, head: str = HEAD) -> Any:
    return load_manifest_text(head + textwrap.dedent(body), file="m.yaml", base_dir=ROOT, check_files=False)


def _problems(body: str, head: str = HEAD) -> list[str]:
    with pytest.raises(ManifestInvalid) as err:
        _load(body, head)
    return [str(p) for p in err.value.problems]


def test_translate_errors_are_located() -> None:
    probs = _problems("""\
      - id: a
        translate: true
        shots: [{prompt: x, voiceover: Hello.}]
      - id: b
        language: de
        translate: true
        shots: [{prompt: x}]
      - id: c
        language: de
        translate: true
        voice: {language: en-US}
        shots: [{prompt: x, voiceover: Hello.}]
    """)
    assert probs == [
        "m.yaml:5:14: error: videos[0].translate: translate: true needs the video's `language`, the language to "
        "translate into (a BCP 47 tag such as de or pt-BR)",
        "m.yaml:9:14: error: videos[1].translate: nothing to translate: no shot of this video has a `voiceover` or a "
        "`caption`",
        "m.yaml:14:21: error: videos[2].voice.language: the voice speaks en-US but translate: true translates into "
        "the video's language de; remove the voice's language or make the two agree",
    ]
    # from defaults: a video with text and no language is refused at the video; one without text is left alone
    head = HEAD.replace("frames: 33}}", "frames: 33}, translate: true}")
    probs = _problems("""\
      - id: a
        shots: [{prompt: x, caption: Hello.}]
      - id: b
        shots: [{prompt: x}]
    """, head)
    assert probs == ["m.yaml:4:3: error: videos[0]: translate: true needs the video's `language` (translate: true from "
                     "defaults), the language to translate into (a BCP 47 tag such as de or pt-BR)"]


def _keys(translator: str = "passthrough:v1") -> KeySource:
    return KeySource(enhancer="e", images="i", video="v", voice="espeak-ng:test", translator=translator)


def test_translations_are_planned_shared_and_keyed_into_voices_and_videos() -> None:
    campaign = _load("""\
      - id: a
        language: de
        translate: true
        caption_from: voiceover
        captions: burn
        shots: [{prompt: x, voiceover: Meet the sofa.}, {prompt: y, voiceover: Made for lofts.}]
      - id: b
        language: de
        translate: true
        shots: [{prompt: x, caption: Meet the sofa.}]
      - id: c
        language: de
        shots: [{prompt: x, voiceover: Meet the sofa.}]
    """)
    plan = build_plan(campaign, _keys(), backends={})
    tr = plan.by_kind("translate")
    # one job per distinct text and language, shared by a's voiceover, a's captions and b's caption
    assert [(j.translate.text, j.translate.target_language, j.stage) for j in tr] == [
        ("Meet the sofa.", "de", 1), ("Made for lofts.", "de", 1)]
    a, b, c = (plan.job(f"video:{v}") for v in "abc")
    assert a.video.caption_translations == (tr[0].id, tr[1].id) and b.video.caption_translations == (tr[0].id,)
    assert {tr[0].id, tr[1].id} <= set(a.deps) and tr[0].id in b.deps and c.video.caption_translations == ()
    spoken = [plan.job(v) for v in a.video.voices if v]
    assert [v.voice.translation for v in spoken] == [tr[0].id, tr[1].id] and all(v.deps == (v.voice.translation,)
                                                                                   for v in spoken)
    untranslated = plan.job(c.video.voices[0] or "")
    assert untranslated.voice.translation is None and untranslated.key != spoken[0].key
    # another translator: new translations, so new utterances and videos; the untranslated video keeps its key
    other = build_plan(campaign, _keys("bedrock:m:translate-v1"), backends={})
    assert [j.key for j in other.by_kind("translate")] != [j.key for j in tr]
    assert {j.key for j in other.by_kind("voice")} & {v.key for v in spoken} == set()
    assert other.job("video:a").key != a.key and other.job("video:c").key == c.key
    # the plan survives its JSON form (the cloud's run document), and a plan without translation has no new fields
    assert Plan.from_dict(json.loads(plan.to_json())) == plan
    assert "caption_translations" not in json.dumps(plan.job("video:c").to_json())
    cost = estimate_cost(plan)
    (item,) = [i for i in cost["items"] if i["what"] == "translation (Claude)"]
    assert item["count"] == 2 and item["usd"] > 0


def _translator(client: Any) -> BedrockTranslator:
    return BedrockTranslator("us.anthropic.claude-haiku-4-5-20251001-v1:0", client=client, max_attempts=1)


def _reply(text: str, stop: str = "end_turn") -> dict[str, Any]:
    return {"output": {"message": {"role": "assistant", "content": [{"text": text}]}}, "stopReason": stop,
            "usage": {"inputTokens": 120, "outputTokens": 9, "totalTokens": 129},
            "metrics": {"latencyMs": 300}}


def test_bedrock_translator_request_passes_botocore_and_replies_are_parsed_strictly() -> None:
    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    translator = _translator(client)
    source = "Meet the <b>sofa</b> & more."
    expected = {"modelId": translator.model_id, "system": [{"text": SYSTEM_PROMPT}],
                "messages": [{"role": "user", "content": [{"text": (
                    "Translate into the language with BCP 47 tag de.\n"
                    "<source>Meet the &lt;b&gt;sofa&lt;/b&gt; &amp; more.</source>")}]}],
                "inferenceConfig": {"temperature": 0.0, "maxTokens": 1024}}
    bad = {
        "Here is the translation: <translation>Das Sofa.</translation>": "is not a translation",
        "Das Sofa.": "is not a translation",
        "<translation>Eins.</translation><translation>Zwei.</translation>": "more than one translation",
        "<translation>  </translation>": "empty translation",
        "<translation>" + "Sofa " * 40 + "</translation>": "not taken as a translation of it",
        "<translation>Das\u202eSofa</translation>": "control character U+202E",
    }
    with Stubber(client) as stub:  # each request checked against botocore's model of bedrock-runtime Converse
        stub.add_response("converse", _reply("<translation>Triff das &lt;b&gt;Sofa&lt;/b&gt; &amp; mehr.</translation>"),
                          expected)
        for text in bad:
            stub.add_response("converse", _reply(text), expected)
        stub.add_response("converse", _reply("<translation>Das", "max_tokens"), expected)
        got = translator.translate(source, source_language=None, target_language="de")
        errors = []
        for _ in range(len(bad) + 1):
            with pytest.raises(JobFailed) as err:
                translator.translate(source, source_language=None, target_language="de")
            errors.append(str(err.value))
        stub.assert_no_pending_responses()
    assert (got.text, got.untranslated, got.usage) == ("Triff das <b>Sofa</b> & mehr.", False,
                                                       {"inputTokens": 120, "outputTokens": 9})
    for msg, why in zip(errors, [*bad.values(), "did not finish (stopReason 'max_tokens')"], strict=True):
        assert msg.startswith("translation: us.anthropic.claude-haiku-4-5-20251001-v1:0") and why in msg, msg


def test_translations_are_shown_as_text_in_the_report() -> None:
    page = translations_html([{"source": "<script>x</script>", "translation": "<img src=x onerror=y>",
                               "untranslated": False, "target_language": "de", "backend": "bedrock", "videos": ["a"]},
                              {"source": "Hi.", "translation": "Hi.", "untranslated": True, "target_language": "fr",
                               "backend": "passthrough", "videos": ["b"]}])
    assert "<script>" not in page and "<img" not in page and "&lt;img src=x onerror=y&gt;" in page
    assert "untranslated: kept as written (passthrough)" in page


def test_the_cloud_enhance_stage_carries_the_translate_jobs() -> None:
    from pipeline.cloud.names import RunRef
    from pipeline.cloud.rundoc import CloudRun

    campaign = _load("""\
      - id: a
        language: fr
        translate: true
        shots: [{prompt: x, caption: Hello., enhance: true}]
    """)
    plan = build_plan(campaign, _keys(), backends={})
    run = CloudRun(ref=RunRef("translate-check", "r1"), plan=plan, source={}, started=0.0, enhancer_model=None,
                   image_waves=(), clip_batches=(), clip_waves=())
    summary = run.summary(report_uri="s3://b/r.json")
    assert summary["enhance"] == [plan.by_kind("enhance")[0].id, plan.by_kind("translate")[0].id]
    assert summary["stages"]["enhance"]["count"] == 2


# --- sentence timing ----------------------------------------------------------------------------------------


def _write_wav(path: Path, bursts: list[tuple[float, float]], length: float, rate: int = 16000) -> None:
    """A tone in each (start, stop) burst, silence elsewhere: speech whose timing is known exactly."""
    t = np.arange(int(length * rate)) / rate
    on = np.zeros_like(t, dtype=bool)
    for a, b in bursts:
        on |= (t >= a) & (t < b)
    samples = (np.sin(2 * np.pi * 220 * t) * 12000 * on).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())


def test_sentence_onsets_come_from_the_longest_pauses_else_in_proportion(tmp_path: Path) -> None:
    wav = tmp_path / "s.wav"
    # three sentences; word gaps of 0.06-0.08 s inside them, sentence pauses of 0.3 and 0.25 s
    _write_wav(wav, [(0.2, 0.6), (0.66, 1.1), (1.4, 1.8), (1.88, 2.3), (2.55, 3.2)], 3.5)
    onsets, how = sentence_onsets(wav, ["One two.", "Three four.", "Five."])
    assert how == "pauses" and np.allclose(onsets, [0.2, 1.4, 2.55], atol=0.011), onsets
    # no pause at all: split by the sentences' lengths (10 and 30 characters over 0.2..2.2 s)
    _write_wav(wav, [(0.2, 2.2)], 2.5)
    onsets, how = sentence_onsets(wav, ["a" * 10, "b" * 30])
    assert how == "proportional" and np.allclose(onsets, [0.2, 0.7], atol=0.011), onsets
    assert sentences("Meet the sofa. Made for lofts!") == ["Meet the sofa.", "Made for lofts!"]


@needs_espeak
def test_translated_campaign_cues_and_burns_each_sentence_on_its_speech(tmp_path: Path, write_campaign) -> None:  # type: ignore[no-untyped-def]
    first, second = "Meet the new sofa.", "Made for sunny lofts."
    path = write_campaign(f"""\
        campaign: translate-e2e
        defaults: {{enhance: false, video: {{model: cogvideox-5b, frames: 33}}, translate: true}}
        videos:
          - id: ad
            language: de
            captions: both
            caption_from: voiceover
            shots:
              - {{prompt: A bee, voiceover: "{first} {second}"}}
              - {{prompt: A sofa, frames: 17, voiceover: Hallo.}}
        """)
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--quiet"]) == 0
    run = next(p for p in (out / "runs" / "translate-e2e").iterdir() if p.is_dir())
    report = json.loads((run / "report.json").read_text())
    tr = {t["source"]: t for t in report["translations"]}
    assert set(tr) == {f"{first} {second}", "Hallo."}
    assert all(t["untranslated"] and t["translation"] == t["source"] and t["target_language"] == "de"
               for t in tr.values())
    assert "untranslated: kept as written (passthrough)" in (run / "report.html").read_text()
    (video,) = report["videos"]
    (fmt,) = video["formats"]
    placed = fmt["sound"]["voices"]
    # where each sentence is spoken: the first sentence spoken alone gives its length; the second starts at the
    # first sound after it in the whole utterance
    voice_job = video["voiceover"][0]
    wav = out / "cache" / "voice" / f"{voice_job['key']}.wav"
    alone = tmp_path / "first.wav"
    EspeakVoiceBackend().synthesize(text=first, voice_id="x", engine="neural", language="de-DE", out=alone)
    _, first_end, _ = speech_bounds(alone)
    onset, _, _ = speech_bounds(wav)
    after = tmp_path / "after.wav"
    with wave.open(str(wav)) as w:
        rate = w.getframerate()
        w.setpos(int(first_end * rate))
        rest = w.readframes(w.getnframes())
        params = w.getparams()
    with wave.open(str(after), "wb") as w:
        w.setparams(params)
        w.writeframes(rest)
    second_onset = first_end + speech_bounds(after)[0]
    truth = [placed[0]["start_s"] + onset, placed[0]["start_s"] + second_onset,
             placed[1]["start_s"] + video["voiceover"][1]["speech_s"][0]]
    vtt = (run / fmt["captions"]).read_text()
    cues = re.findall(r"(shot-[\d.]+)\n(\d\d):(\d\d):(\d\d\.\d+) --> (\d\d):(\d\d):(\d\d\.\d+)\n(.*)\n", vtt)
    assert [(c[0], c[7]) for c in cues] == [("shot-1.1", first), ("shot-1.2", second), ("shot-2", "Hallo.")], vtt
    starts = [int(c[1]) * 3600 + int(c[2]) * 60 + float(c[3]) for c in cues]
    stops = [int(c[4]) * 3600 + int(c[5]) * 60 + float(c[6]) for c in cues]
    offsets = [round(start - want, 3) for start, want in zip(starts, truth, strict=True)]
    print(f"cue start - speech start (s): {offsets}")
    assert all(abs(o) <= 0.25 for o in offsets), (starts, truth)
    # the burned captions, read back: the picture differs from the clips' own frames exactly on the cues' frames,
    # and the text changes from the first sentence to the second at the second cue
    fps = video["fps"]
    clips = [run / c["path"] for c in video["clips"]]
    plain = [f for c in clips for f in decode(c)]
    burned = list(decode(run / fmt["path"]))
    assert len(burned) == len(plain)
    band = slice(int(burned[0].shape[0] * 0.6), burned[0].shape[0])
    # the share of the band's pixels changed by more than encoding noise: the caption's box and letters
    diff = [float((np.abs(b[band].astype(int) - p[band].astype(int)).max(axis=-1) > 40).mean())
            for b, p in zip(burned, plain, strict=True)]
    on_cue = [any(round(a * fps) <= i < round(b * fps) for a, b in zip(starts, stops, strict=True))
              for i in range(len(burned))]
    quiet = max(d for d, on in zip(diff, on_cue, strict=True) if not on)
    loud = min(d for d, on in zip(diff, on_cue, strict=True) if on)
    print(f"burned band changed: off cues at most {quiet:.4f}, on cues at least {loud:.4f}")
    assert quiet < 0.001 and loud > 0.01, (quiet, loud, diff)
    switch = round(starts[1] * fps)
    text_change = float(np.abs(burned[switch][band].astype(int) - burned[switch - 1][band].astype(int)).mean())
    assert text_change > 1.0, text_change


@needs_espeak
def test_a_cached_utterance_is_spoken_again_when_its_translation_now_says_otherwise(tmp_path: Path) -> None:
    """A translation's key is its source text, languages and translator, not its words: a translation made
    again (its entry damaged, quarantined, re-made by a model that words it otherwise) keeps its key, and so
    does the utterance made from it. The voice job's cache hit checks the text it spoke against the translation
    stored now: the utterance whose translation changed is spoken again, the other one is reused."""
    from pipeline.backends import Backends, PassThroughEnhancer, make_image_editor, make_video_backend
    from pipeline.storage.store import LocalStore
    from pipeline.tasks import TaskContext
    from pipeline.tasks.common import run_task
    from pipeline.tasks.translate import run_translate
    from pipeline.tasks.voice import run_voice

    client = boto3.client("bedrock-runtime", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    translator = _translator(client)
    voice = EspeakVoiceBackend()
    campaign = _load("""\
      - id: a
        language: de
        translate: true
        shots: [{prompt: x, voiceover: Meet the sofa.}, {prompt: y, voiceover: Made for lofts.}]
    """)
    plan = build_plan(campaign, KeySource(enhancer="e", images="i", video="v", voice=voice.identity(),
                                          translator=translator.identity()), backends={})
    backends = Backends(enhancer=PassThroughEnhancer(), images=make_image_editor("local"),
                        video=make_video_backend("preview"), voice=voice, translator=translator)
    store = LocalStore(tmp_path / "out")
    (tmp_path / "work").mkdir()
    ctx = TaskContext(plan=plan, store=store, backends=backends, workdir=tmp_path / "work")
    meet, made = plan.by_kind("translate")
    spoken = [plan.job(v) for v in plan.job("video:a").video.voices if v]
    assert [v.voice.translation for v in spoken] == [meet.id, made.id]

    def run(kind: str) -> dict[str, Any]:
        task = run_translate if kind == "translate" else run_voice
        return {j.id: run_task(j, ctx, task) for j in plan.by_kind(kind)}

    with Stubber(client) as stub:  # Claude's words, first time and (for the damaged entry) second time
        for reply in ("Lerne das Sofa kennen.", "Gemacht für Lofts.", "Triff das Sofa."):
            stub.add_response("converse", _reply(f"<translation>{reply}</translation>"))
        first = run("translate")
        assert {r.status for r in first.values()} == {"executed"}
        voiced = run("voice")
        assert [voiced[v.id].status for v in spoken] == ["executed", "executed"]
        wavs = [(tmp_path / "out" / v.output_key).read_bytes() for v in spoken]
        # the same keys, and the voice jobs find their entries: nothing is spoken twice while nothing changed
        assert [r.status for r in run("voice").values()] == ["cached", "cached"]

        # the first translation's entry damaged (cut short): quarantined at its next use and translated again
        entry = tmp_path / "out" / meet.output_key
        entry.write_bytes(entry.read_bytes()[:5])
        again = run("translate")
        assert (again[meet.id].status, again[made.id].status) == ("executed", "cached")
        assert entry.read_text() == "Triff das Sofa."
        stub.assert_no_pending_responses()
    after = run("voice")
    respoken, reused = (after[v.id] for v in spoken)
    assert (respoken.status, respoken.key, respoken.info["text"]) == ("executed", spoken[0].key, "Triff das Sofa.")
    assert (reused.status, reused.info["text"]) == ("cached", "Gemacht für Lofts.")
    assert (tmp_path / "out" / spoken[0].output_key).read_bytes() != wavs[0]  # the new words, spoken
    assert (tmp_path / "out" / spoken[1].output_key).read_bytes() == wavs[1]
    assert [r.status for r in run("voice").values()] == ["cached", "cached"]  # and now both are kept
