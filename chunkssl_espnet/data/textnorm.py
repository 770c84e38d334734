"""Transcript normalisation shared by the corpus preparations.

``librispeech_style`` gives LibriSpeech-like references (upper case, no punctuation but
word-internal apostrophes, hyphens as spaces); ``lowercase_remove_punct`` is ESPnet's ST source
form ``text.lc.rm.<lang>``. Both keep letters of any script (German umlauts, ...).
"""

from __future__ import annotations

import re

_NOT_WORD = re.compile(r"[^\w' ]+")
_EDGE_APOSTROPHE = re.compile(r"(?<!\w)'|'(?!\w)")


def _strip_punct(text: str) -> str:
    """Punctuation (and underscores) to spaces, apostrophes kept only inside words."""
    text = _NOT_WORD.sub(" ", text.replace("_", " "))
    text = _EDGE_APOSTROPHE.sub(" ", text)
    return " ".join(text.split())


def librispeech_style(text: str) -> str:
    """Upper case, punctuation removed, hyphens as spaces, apostrophes inside words kept.

    ``"Don't panic -- it's a long-forgotten test!"`` ->
    ``"DON'T PANIC IT'S A LONG FORGOTTEN TEST"``.
    """
    return _strip_punct(text).upper()


def lowercase_remove_punct(text: str) -> str:
    """ESPnet's ``lc.rm`` case: lower case, punctuation removed, apostrophes inside words kept."""
    return _strip_punct(text).lower()
