"""Campaign content pipeline: manifest -> plan -> cached jobs -> videos, images and a report."""

from __future__ import annotations

__version__ = "0.1.0"
