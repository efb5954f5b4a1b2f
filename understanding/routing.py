"""Pure routing decisions on a classification (no database): the safety margins
that keep a possibly clinical message with clinicians."""

from understanding.classifier import CLINICAL_INTENTS

# A message this likely to be clinical (the clinical intents' summed probability)
# is never moved to a non-clinical team, whatever intent came out on top: a
# symptom described in billing words still needs a nurse to read it.
CLINICAL_GUARD = 0.15


def keeps_with_clinicians(classification):
    return (
        classification.intent in CLINICAL_INTENTS
        or classification.clinical_probability >= CLINICAL_GUARD
    )
