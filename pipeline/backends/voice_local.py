"""`--voice local`: espeak-ng speaks each utterance in its language, a placeholder voice for previews (as preview
clips stand in for generated ones); the caption timing then comes from the audio itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from pipeline.backends.base import Speech
from pipeline.errors import BackendUnavailable, JobFailed
from pipeline.manifest.voices import espeak_voice

ESPEAK = "espeak-ng"
INSTALL_HINT = "install it with `apt-get install espeak-ng` (make install does this where it may)"


class EspeakVoiceBackend:
    name = "local"

    def __init__(self) -> None:
        self._exe = shutil.which(ESPEAK)

    def identity(self) -> str:
        # the package's voice data decides the audio; its version goes into the key (a different espeak-ng
        # makes new utterances, never reuses another's under the same key)
        return f"espeak-ng:{self.version()}"

    def version(self) -> str:
        if not self._exe:
            return "missing"
        out = subprocess.run([self._exe, "--version"], capture_output=True, text=True, errors="replace").stdout
        words = out.split()
        return words[words.index("text-to-speech:") + 1] if "text-to-speech:" in words else "unknown"

    def synthesize(self, *, text: str, voice_id: str, engine: str, language: str, out: Path) -> Speech:
        if not self._exe:
            raise BackendUnavailable(f"--voice local needs {ESPEAK}, which is not installed; {INSTALL_HINT}")
        voice = espeak_voice(language)
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".wav", dir=out.parent)
        os.close(fd)
        try:
            # the text on standard input (-b 1: UTF-8), so no text can be read as an option
            proc = subprocess.run([self._exe, "-v", voice, "-b", "1", "-w", tmp, "--stdin"], input=text.encode(),
                                  capture_output=True)
            if proc.returncode != 0 or Path(tmp).stat().st_size <= 44:
                raise JobFailed(f"{ESPEAK} -v {voice} could not speak the text: "
                                f"{proc.stderr.decode(errors='replace').strip()[-500:] or 'no audio'}")
            os.replace(tmp, out)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return Speech(path=out, backend=f"local:{ESPEAK}", placeholder=True, timing="audio",
                      extra={"espeak_voice": voice, "asked_voice": f"{voice_id} ({engine})"})
