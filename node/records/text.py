"""Search normalisation: the one function that folds a record's searched text when it is indexed and a
search query before it is matched, so both sides always agree (node/store/records.py; PROTOCOL.md §9).

Arabic is written with optional marks and interchangeable letter forms, and the article is written
joined to its word, so an exact word match misses most of what a reader means ("خط" would not find
"الخط"). The folding is deliberately light (no stemming) and touches Arabic only; other text is left as
it was, bar Unicode composition (NFC):

- harakat and other Arabic marks (U+064B..U+0655, superscript alef U+0670) and the tatweel U+0640 are
  removed;
- the alef forms أ إ آ ٱ become ا, alef maqsura ى becomes ي, ta marbuta ة becomes ه;
- the article at the start of a word, alone or behind a joined conjunction or preposition (ال وال بال
  كال فال), and لل (ل + ال) are removed when at least two letters remain (the light10 stemmer's rule:
  "الف" stays whole).
"""

from __future__ import annotations

import re
import unicodedata

_MARKS = re.compile("[\u064b-\u0655\u0670\u0640]")
# Folded by str.replace, one letter after the other: str.translate looks every character of non-ASCII text up in
# its table: over a record's text about 16 times slower (and the index folds each record's text twice per update).
_LETTERS = (("أ", "ا"), ("إ", "ا"), ("آ", "ا"), ("ٱ", "ا"), ("ى", "ي"), ("ة", "ه"))
# Arabic letters (hamza .. yeh, after the folding above); \b is Unicode-aware: the article only opens a word.
_ARTICLE = re.compile(r"\b(?:[وبكف]?ال|لل)(?=[\u0621-\u064a]{2})")


def normalise(text: str) -> str:
    """``text`` folded for full-text search (index and query alike)."""
    text = _MARKS.sub("", unicodedata.normalize("NFC", text))
    for letter, folded in _LETTERS:
        text = text.replace(letter, folded)
    return _ARTICLE.sub("", text)
