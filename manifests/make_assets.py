"""Regenerate the example campaign's small assets (committed; run only to change them).

python manifests/make_assets.py
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

HERE = Path(__file__).parent / "assets"


def sofa() -> None:
    w, h = 640, 427
    y = np.linspace(0, 1, h)[:, None, None]
    wall = (np.array([236, 228, 214]) * (1 - y) + np.array([196, 182, 160]) * y).repeat(w, axis=1)
    img = Image.fromarray(wall.astype(np.uint8))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 330, w, h], fill=(150, 118, 86))  # floor
    for x in range(0, w, 48):
        d.line([(x, 330), (x - 40, h)], fill=(138, 108, 78), width=2)
    mask = Image.new("L", (w, h), 0)
    md = ImageDraw.Draw(mask)
    body = (150, 200, 490, 320)
    for draw, colour in ((d, (178, 74, 58)), (md, 255)):
        draw.rounded_rectangle(body, 18, fill=colour)  # seat and back
        draw.rounded_rectangle((130, 170, 190, 320), 16, fill=colour)  # arms
        draw.rounded_rectangle((450, 170, 510, 320), 16, fill=colour)
        draw.rounded_rectangle((170, 150, 470, 230), 22, fill=colour)
        draw.rectangle((160, 320, 172, 340), fill=colour)  # legs
        draw.rectangle((468, 320, 480, 340), fill=colour)
    d.rounded_rectangle((200, 168, 310, 222), 14, fill=(196, 92, 74))  # cushions
    d.rounded_rectangle((330, 168, 440, 222), 14, fill=(196, 92, 74))
    d.ellipse((540, 250, 600, 330), fill=(70, 110, 72))  # a plant, for erase-object
    d.rectangle((560, 300, 580, 332), fill=(120, 84, 60))
    img = img.filter(ImageFilter.SMOOTH)
    img.save(HERE / "sofa.png", optimize=True)
    plant = Image.new("L", (w, h), 0)
    ImageDraw.Draw(plant).ellipse((532, 242, 608, 340), fill=255)
    plant.save(HERE / "plant-mask.png", optimize=True)
    mask.save(HERE / "sofa-mask.png", optimize=True)


def brand() -> None:
    w, h = 320, 240
    xx, yy = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    r = 30 + 40 * xx
    g = 60 + 90 * yy
    b = 120 + 110 * (1 - xx * yy)
    img = Image.fromarray(np.dstack([r, g, b]).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for i in range(6):
        d.ellipse((20 + 50 * i, 60 + 20 * (i % 2), 80 + 50 * i, 120 + 20 * (i % 2)), outline=(240, 200, 90), width=4)
    img.save(HERE / "brand-style.jpg", quality=85)


def music(seconds: float = 24.0, rate: int = 22050) -> None:
    t = np.arange(int(seconds * rate)) / rate
    notes = [220.0, 277.18, 329.63, 440.0]
    out = np.zeros_like(t)
    for i, f in enumerate(notes):
        env = 0.5 + 0.5 * np.sin(2 * np.pi * (0.25 + i * 0.05) * t + i)
        out += np.sin(2 * np.pi * f * t) * env / len(notes)
    pcm = (out * 0.6 * 32767).astype(np.int16)
    wav = HERE / "music.wav"
    with wave.open(str(wav), "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(rate)
        wf.writeframes(pcm.tobytes())
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(wav), "-b:a", "48k",
                    str(HERE / "music.mp3")], check=True)
    wav.unlink()


if __name__ == "__main__":
    HERE.mkdir(exist_ok=True)
    sofa()
    brand()
    music()
    for p in sorted(HERE.iterdir()):
        print(f"{p.name}: {p.stat().st_size} bytes")
