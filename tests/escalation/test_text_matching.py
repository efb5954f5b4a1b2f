import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from escalation.text_matching import (
    MAX_PHRASE_LENGTH,
    MAX_PHRASES,
    PhraseMatcher,
    compile_phrases,
    fold,
    validate_phrases,
)


def test_fold_lowercases_strips_accents_and_collapses_whitespace():
    assert fold("  Chést\tPAIN \n now ") == "chest pain now"


def test_fold_straightens_typographic_quotes():
    assert fold("can\u2019t \u201cbreathe\u201d") == 'can\'t "breathe"'


def test_fold_turns_acute_accent_used_as_apostrophe_into_apostrophe():
    assert fold("can\u00b4t") == "can't"


def test_fold_expands_compatibility_characters_and_german_sharp_s():
    assert fold("\ufb01ve Stra\u00dfe") == "five strasse"


@pytest.mark.parametrize("text", ["CHEST  pain!", "chést pain", "my chest pain", "Chest\npain."])
def test_phrase_matches_regardless_of_case_accents_and_spacing(text):
    assert compile_phrases(["chest pain"]).find(text) == ["chest pain"]


def test_phrase_does_not_match_words_run_together():
    assert compile_phrases(["chest pain"]).find("chestpain") == []


def test_short_phrase_does_not_match_inside_a_longer_word():
    matcher = compile_phrases(["OD"])
    assert matcher.find("good food") == []
    assert matcher.find("took an OD.") == ["OD"]


def test_phrase_followed_by_apostrophe_d_still_matches():
    assert compile_phrases(["OD"]).find("I think I OD'd") == ["OD"]


def test_phrase_words_may_be_separated_by_hyphens():
    assert compile_phrases(["short of breath"]).find("very short-of-breath") == ["short of breath"]


@pytest.mark.parametrize(
    "text", ["I can't breathe", "I cant breathe", "I can\u2019t breathe", "CAN'T BREATHE!"]
)
def test_apostrophes_in_phrase_are_optional_in_the_text(text):
    assert compile_phrases(["can't breathe"]).find(text) == ["can't breathe"]


def test_phrase_without_apostrophe_matches_text_with_one():
    assert compile_phrases(["cant breathe"]).find("I can't breathe") == ["cant breathe"]


def test_word_does_not_match_its_negative_contraction():
    assert compile_phrases(["can"]).find("I can't come") == []


def test_phrase_followed_by_possessive_or_clitic_still_matches():
    assert compile_phrases(["chest pain"]).find("my chest pain's worse") == ["chest pain"]


def test_phrase_with_punctuation_edge_needs_no_word_boundary_there():
    assert compile_phrases(["911!"]).find("call 911!!") == ["911!"]
    assert compile_phrases(["#help"]).find("x#help") == ["#help"]


def test_phrases_starting_with_punctuation_and_with_letters_are_found_together():
    matcher = compile_phrases(["help", "?!", "#help"])
    assert matcher.find("#help now?!") == ["#help", "help", "?!"]


def test_find_returns_phrases_as_configured_in_order_of_first_appearance():
    matcher = compile_phrases(["Suicide", "Chest Pain", "bleeding"])
    text = "bleeding a lot, chest pain, more bleeding, thinking about suicide"
    assert matcher.find(text) == ["bleeding", "Chest Pain", "Suicide"]


def test_find_reports_each_phrase_once():
    assert compile_phrases(["help"]).find("help help HELP") == ["help"]


def test_phrases_that_fold_to_the_same_text_are_deduplicated_keeping_the_first_spelling():
    matcher = compile_phrases(["Chest pain", "chest  PAIN", "chést pain"])
    assert matcher.phrases == ("Chest pain",)
    assert matcher.find("chest pain") == ["Chest pain"]


def test_phrase_nested_in_a_longer_phrase_at_the_same_position_is_found_too():
    matcher = compile_phrases(["chest", "chest pain", "pain"])
    assert matcher.find("chest pain") == ["chest", "chest pain", "pain"]


def test_overlapping_phrases_are_all_found():
    matcher = compile_phrases(["shortness of breath", "breath test"])
    assert matcher.find("shortness of breath test") == ["shortness of breath", "breath test"]


def test_matcher_without_phrases_finds_nothing():
    assert compile_phrases([]).find("chest pain") == []


def test_find_on_empty_text_finds_nothing():
    assert compile_phrases(["pain"]).find("") == []


def test_compile_phrases_returns_a_phrase_matcher():
    assert isinstance(compile_phrases(["pain"]), PhraseMatcher)


def test_phrase_with_regex_metacharacters_is_matched_literally():
    matcher = compile_phrases(["a+b (c)", "x.y"])
    assert matcher.find("is a+b (c) here") == ["a+b (c)"]
    assert matcher.find("xzy") == []


def test_validate_accepts_a_normal_list():
    validate_phrases(["chest pain", "can't breathe"])


def test_validate_rejects_an_empty_phrase():
    with pytest.raises(ValueError, match="phrase 2 is empty"):
        validate_phrases(["pain", "   "])


def test_validate_rejects_a_phrase_of_only_apostrophes_and_hyphens():
    with pytest.raises(ValueError, match="phrase 1 is empty"):
        validate_phrases(["' - '"])


def test_validate_rejects_a_non_string_phrase():
    with pytest.raises(ValueError, match="phrase 2 is not a string \\(got int\\)"):
        validate_phrases(["pain", 911])


def test_validate_rejects_a_phrase_longer_than_the_limit():
    validate_phrases(["x" * MAX_PHRASE_LENGTH])
    with pytest.raises(
        ValueError, match=f"phrase 1 is 101 characters long \\(at most {MAX_PHRASE_LENGTH}\\)"
    ):
        validate_phrases(["x" * (MAX_PHRASE_LENGTH + 1)])


def test_validate_rejects_more_phrases_than_the_limit():
    validate_phrases([f"word{index}" for index in range(MAX_PHRASES)])
    with pytest.raises(ValueError, match=f"too many phrases: 201 \\(at most {MAX_PHRASES}\\)"):
        validate_phrases([f"word{index}" for index in range(MAX_PHRASES + 1)])


def test_validate_rejects_a_bare_string_instead_of_a_list():
    with pytest.raises(ValueError, match="must be a list of strings"):
        validate_phrases("chest pain")


def test_compile_phrases_validates():
    with pytest.raises(ValueError, match="phrase 1 is empty"):
        compile_phrases([""])


def test_matcher_with_the_maximum_number_of_phrases_finds_matches_across_the_list():
    phrases = [f"symptom number {index}" for index in range(MAX_PHRASES)]
    matcher = compile_phrases(phrases)
    assert matcher.find("symptom number 199 then symptom number 7") == [
        "symptom number 199",
        "symptom number 7",
    ]


def _reference_find(phrases, text):
    """One regular expression per phrase, searched separately: slow but obviously right."""
    folded = fold(text)
    firsts = []
    seen_keys = set()
    for index, phrase in enumerate(phrases):
        words = fold(phrase).replace("'", "").replace("-", " ").split()
        key = " ".join(words)
        if key in seen_keys:
            continue
        seen_keys.add(key)
        body = r"[\s\-]+".join("'?".join(re.escape(char) for char in word) for word in words)
        start = r"(?<!\w)(?<!\w')" if re.match(r"\w", key[0]) else ""
        end = r"(?!\w)(?!'t(?!\w))" if re.match(r"\w", key[-1]) else ""
        pattern = start + body + end
        found = re.search(pattern, folded)
        if found:
            firsts.append((found.start(), index, phrase))
    return [phrase for _start, _index, phrase in sorted(firsts)]


_words = st.sampled_from(
    ["chest", "pain", "can't", "cant", "breathe", "od", "good", "a", "#od", "!!", "911!"]
)
_noise = st.sampled_from(["Chest", "PAIN", "can\u2019t", "-", "!", "x"])
_separators = st.sampled_from([" ", "  ", "-", "\n", ", "])


@settings(max_examples=500, deadline=None)
@given(
    phrases=st.lists(
        st.lists(_words, min_size=1, max_size=3).map(" ".join), min_size=1, max_size=6
    ),
    data=st.data(),
)
def test_find_agrees_with_searching_each_phrase_separately(phrases, data):
    # Text made mostly of the phrases themselves, so that phrases overlap and nest often.
    pieces = data.draw(st.lists(st.one_of(st.sampled_from(phrases), _words, _noise), max_size=8))
    text = "".join(piece + data.draw(_separators) for piece in pieces)
    assert compile_phrases(phrases).find(text) == _reference_find(phrases, text)
