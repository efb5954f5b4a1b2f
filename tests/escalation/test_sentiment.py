import threading
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from escalation import sentiment
from escalation.sentiment import MAX_TEXT_CHARS, score_text


def test_strongly_negative_message_scores_below_minus_half():
    text = "This is terrible. I am furious, the pain is awful and nobody has called me back!"
    assert score_text(text) < -0.5


def test_positive_message_scores_above_half():
    assert score_text("Thank you so much, the nurse was wonderful and very helpful!") > 0.5


def test_neutral_message_scores_near_zero():
    assert abs(score_text("My appointment is on Tuesday at 10.")) < 0.1


def test_empty_text_scores_zero():
    assert score_text("") == 0.0


def test_whitespace_only_text_scores_zero():
    assert score_text("  \n\t ") == 0.0


def test_score_is_rounded_to_four_decimals():
    score = score_text("I am a bit upset about the bill")
    assert score == round(score, 4)


def test_long_text_is_scored_on_its_opening_only():
    opening = "I am so angry and upset, this is horrible. " * 10
    tail = "Wonderful, great, excellent, love it! " * 2_000
    assert len(opening) < MAX_TEXT_CHARS < len(opening + tail)
    cut_score = score_text(opening + tail)
    assert cut_score == score_text((opening + tail)[:MAX_TEXT_CHARS].rsplit(" ", 1)[0])
    assert cut_score > score_text(opening)


def test_truncation_does_not_cut_a_word_in_half():
    text = "a " * (MAX_TEXT_CHARS // 2 - 1) + "unhappy"
    assert len(text) > MAX_TEXT_CHARS
    assert sentiment._truncate(text) == ("a " * (MAX_TEXT_CHARS // 2 - 1)).rstrip()


def test_analyzer_is_created_once_and_reused(monkeypatch):
    monkeypatch.setattr(sentiment, "_analyzer", None)
    score_text("fine")
    first = sentiment._analyzer
    score_text("also fine")
    assert first is not None
    assert sentiment._analyzer is first


def test_concurrent_first_use_creates_a_single_analyzer(monkeypatch):
    created = []
    real_class = sentiment.SentimentIntensityAnalyzer

    class SlowAnalyzer(real_class):
        def __init__(self):
            created.append(self)
            time.sleep(0.05)  # widen the window in which a second thread could slip in
            super().__init__()

    monkeypatch.setattr(sentiment, "_analyzer", None)
    monkeypatch.setattr(sentiment, "SentimentIntensityAnalyzer", SlowAnalyzer)
    barrier = threading.Barrier(8)
    scores = []

    def work():
        barrier.wait()
        scores.append(score_text("I love this"))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(created) == 1
    assert len(set(scores)) == 1


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=300))
def test_score_is_always_between_minus_one_and_one(text):
    assert -1.0 <= score_text(text) <= 1.0
