"""Search normalisation (node/records/text.py): the folding applied alike to the indexed text and to queries."""

from __future__ import annotations

import pytest

from node.records.text import normalise


@pytest.mark.parametrize(("text", "folded"), [
    ("الخط", "خط"),  # the article
    ("والكتاب بالمدرسة كالبحر فالعرض للمدرسة", "كتاب مدرسه بحر عرض مدرسه"),  # joined to و ب ك ف, and لل
    ("أحمد إيمان آمال ٱلله", "احمد ايمان امال له"),  # alef forms
    ("مستشفى", "مستشفي"),  # alef maqsura
    ("مدرسة", "مدرسه"),  # ta marbuta
    ("العربيـــة", "عربيه"),  # tatweel
    ("مَدْرَسَةٌ هٰذا", "مدرسه هذا"),  # harakat, shadda, sukun, superscript alef
    ("ألف الف", "الف الف"),  # fewer than two letters would remain: not the article
])
def test_arabic_folded(text: str, folded: str) -> None:
    assert normalise(text) == folded


def test_decomposed_hamza_folds_as_the_composed_letter() -> None:
    assert normalise("ا\u0654حمد") == normalise("أحمد") == "احمد"


@pytest.mark.parametrize("text", ["Alhambra all alles", "Café, l'Ópera — Ünïcode 2027", "한국 전통 음악", "Tüzép"])
def test_other_scripts_unchanged(text: str) -> None:
    assert normalise(text) == text

