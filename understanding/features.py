"""The text features the intent model reads, computed here so training and serving
share one definition: a normalised form of the message (lower case, no accents,
texting shorthand spelled out, stretched letters shortened), read as word and
character n-grams. Character n-grams keep a misspelt word close to its spelling."""

import re
import unicodedata

# Shorthand patients type, in English and Spanish, mapped to the word it stands for.
# Only whole tokens are replaced ("u" alone, never the u inside "bus").
SHORTHAND = {
    "u": "you",
    "ur": "your",
    "r": "are",
    "pls": "please",
    "plz": "please",
    "plez": "please",
    "thx": "thanks",
    "thnx": "thanks",
    "ty": "thanks",
    "appt": "appointment",
    "appts": "appointments",
    "apt": "appointment",
    "apmt": "appointment",
    "tmrw": "tomorrow",
    "tmr": "tomorrow",
    "tomoro": "tomorrow",
    "2morrow": "tomorrow",
    "2day": "today",
    "tonite": "tonight",
    "rx": "prescription",
    "rxs": "prescriptions",
    "script": "prescription",
    "meds": "medication",
    "med": "medication",
    "dr": "doctor",
    "doc": "doctor",
    "dx": "diagnosis",
    "b4": "before",
    "wk": "week",
    "wks": "weeks",
    "mon": "monday",
    "tues": "tuesday",
    "wed": "wednesday",
    "thurs": "thursday",
    "fri": "friday",
    "sat": "saturday",
    "sun": "sunday",
    "hrs": "hours",
    "hr": "hour",
    "ins": "insurance",
    "idk": "i do not know",
    "im": "i am",
    "cant": "cannot",
    "dont": "do not",
    "wont": "will not",
    "didnt": "did not",
    "wanna": "want to",
    "gonna": "going to",
    "gotta": "have to",
    "asap": "as soon as possible",
    "msg": "message",
    "info": "information",
    "pharm": "pharmacy",
    "labs": "lab results",
    # Spanish texting
    "q": "que",
    "k": "que",
    "xq": "porque",
    "pq": "porque",
    "porq": "porque",
    "x": "por",
    "xfa": "por favor",
    "porfa": "por favor",
    "porfis": "por favor",
    "pf": "por favor",
    "pa": "para",
    "tb": "tambien",
    "tmb": "tambien",
    "tambn": "tambien",
    "d": "de",
    "dnd": "donde",
    "cdo": "cuando",
    "cnd": "cuando",
    "sta": "esta",
    "toy": "estoy",
    "grax": "gracias",
    "grx": "gracias",
    "mñn": "manana",
    "mnn": "manana",
    "hla": "hola",
    "bn": "bien",
    "tqm": "te quiero mucho",
    "dra": "doctora",
}

_TOKEN = re.compile(r"[a-z0-9ñ]+|[^\sa-z0-9ñ]")
_STRETCHED = re.compile(r"(.)\1{2,}")


def _strip_accents(text):
    # ñ survives: it separates words in Spanish (año, ano).
    text = text.replace("ñ", "\0")
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return plain.replace("\0", "ñ")


def normalise(text):
    """The form of a message that the vectorizers read."""
    text = _strip_accents(text.lower())
    text = _STRETCHED.sub(r"\1\1", text)
    tokens = [SHORTHAND.get(token, token) for token in _TOKEN.findall(text)]
    return " ".join(tokens)


def build_features():
    """Word unigrams and bigrams (what a person reads as the reason) and character
    2- to 5-grams inside word boundaries (robust to typos), TF-IDF weighted with
    sublinear counts so a repeated word does not shout."""
    # Imported here: only training builds features; serving unpickles them, so
    # processes that never classify (web, beat, commands) do not load scikit-learn.
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    return FeatureUnion(
        [
            (
                "words",
                TfidfVectorizer(
                    preprocessor=normalise,
                    token_pattern=r"(?u)\b\w+\b",  # noqa: S106 - a regex, not a secret
                    ngram_range=(1, 2),
                    min_df=2,
                    sublinear_tf=True,
                ),
            ),
            (
                "chars",
                TfidfVectorizer(
                    preprocessor=normalise,
                    analyzer="char_wb",
                    ngram_range=(2, 5),
                    min_df=2,
                    sublinear_tf=True,
                    max_features=60000,
                ),
            ),
        ]
    )
