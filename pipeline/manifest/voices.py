"""The voices a manifest may name: Amazon Polly's voices by language and engine, the placeholder voice's
(espeak-ng) languages, and the limits and loudness targets the voice rules and the mix share."""

from __future__ import annotations

from dataclasses import dataclass

ENGINES = ("standard", "neural", "long-form", "generative")  # Polly's engines (AWS doc: "Amazon Polly voice engines")
DEFAULT_ENGINE = "neural"
DEFAULT_VOICE_LANGUAGE = "en-US"
VOICE_BACKENDS = ("local", "polly")

# Text limits (AWS doc: "Quotas in Amazon Polly", limits.html): SynthesizeSpeech takes 3,000 billed characters,
# StartSpeechSynthesisTask 100,000; longer text is refused at validation.
SYNTHESIZE_MAX_CHARS = 3000
TASK_MAX_CHARS = 100_000
# A fast announcer speaks about 20 characters a second (~200 words a minute): text that needs longer than its shot
# even at that pace is refused at validation with the figures; the real length is checked again at assembly.
FAST_CHARS_PER_S = 20.0

# Loudness per delivered file: -14 LUFS integrated and at most -1 dBTP (what the large social platforms normalise
# to); `loudness: -23` is EBU R128 broadcast.
DEFAULT_LOUDNESS_LUFS = -14.0
TRUE_PEAK_DBTP = -1.0
LOUDNESS_RANGE = (-36.0, -5.0)


@dataclass(frozen=True)
class PollyVoice:
    id: str
    language: str
    engines: tuple[str, ...]


def _voices(language: str, rows: dict[str, str]) -> list[PollyVoice]:
    short = {"s": "standard", "n": "neural", "l": "long-form", "g": "generative"}
    return [PollyVoice(v, language, tuple(short[c] for c in engines)) for v, engines in rows.items()]


# From the AWS doc "Available voices" (polly/latest/dg/available-voices, read through the docs.amazonaws.cn copy):
# the languages the examples use, each voice with the engines the table marks. The first voice of a language is
# its default. Generative rows that the table did not show plainly are left out (a refusal, never a failed call).
POLLY_VOICES: tuple[PollyVoice, ...] = tuple(
    _voices("en-US", {"Joanna": "sn", "Matthew": "sng", "Ruth": "nlg", "Danielle": "nl", "Gregory": "nl",
                      "Kendra": "sn", "Salli": "sn", "Joey": "sn", "Ivy": "sn", "Kimberly": "sn", "Kevin": "n"})
    + _voices("en-GB", {"Amy": "sng", "Emma": "sn", "Brian": "sng", "Arthur": "n"})
    + _voices("de-DE", {"Vicki": "sn", "Daniel": "n", "Marlene": "s", "Hans": "s"})
    + _voices("fr-FR", {"Lea": "sn", "Remi": "n", "Celine": "s", "Mathieu": "s"})
    + _voices("es-ES", {"Lucia": "sn", "Sergio": "n", "Conchita": "s", "Enrique": "s"})
    + _voices("it-IT", {"Bianca": "sn", "Adriano": "n", "Carla": "s", "Giorgio": "s"})
)
VOICES_BY_ID = {v.id: v for v in POLLY_VOICES}
# A bare language (the video's `language: de`) means its main region's voices.
REGION_OF = {"en": "en-US", "de": "de-DE", "fr": "fr-FR", "es": "es-ES", "it": "it-IT"}


def polly_language(language: str) -> str:
    """`de` -> `de-DE`; a full tag in any case -> Polly's spelling (`en-gb` -> `en-GB`)."""
    parts = language.split("-")
    if len(parts) == 1:
        return REGION_OF.get(parts[0].lower(), parts[0].lower())
    return f"{parts[0].lower()}-{parts[1].upper()}"


def voices_for(language: str, engine: str) -> list[PollyVoice]:
    return [v for v in POLLY_VOICES if v.language == language and engine in v.engines]


def espeak_voice(language: str) -> str:
    """espeak-ng's voice for a Polly language (espeak-ng --voices): en-US -> en-us, de-DE -> de."""
    lang = language.lower()
    return lang if lang in ("en-us", "en-gb", "fr-fr", "pt-br") else lang.split("-")[0]

# Where speech sits in its shot's window (the shot's span of the assembled video, pipeline/manifest/formats.py):
# it starts this long after the window opens and must end this long before it closes.
VOICE_LEAD_S = 0.15
VOICE_TAIL_S = 0.10
