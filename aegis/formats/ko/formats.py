"""The same formats in Korean pages (aegis/formats/en/formats.py)."""

from aegis.formats.en.formats import *  # noqa: F403
