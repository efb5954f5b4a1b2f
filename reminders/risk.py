"""No-show risk of an appointment: a transparent additive score, 0 to 1.

    score = 0.05                                  base
          + 0.40 x prior no-show rate             no-shows / (no-shows + attended) among the
                                                  patient's earlier appointments; 0 with none
          + 0.10 if booked 14 days or more ahead  from when it was booked to when it starts
          + 0.20 if unconfirmed after a reminder  a reminder sent 24 h or more before the
                                                  appointment went out, and it is still only
                                                  booked (not confirmed)
          + 0.05 for each flag                    low literacy, needs an interpreter
    then clamped to 0..1.

Each term is stored with its inputs (AppointmentRisk.factors), so staff can see why a
score is what it is. The weights are a starting point, chosen so that no single
factor reaches the default high-risk threshold (0.5) alone: a patient who missed every
earlier appointment (0.45) crosses it once a reminder also goes unanswered. Earlier
appointments that are neither attended nor missed (cancelled, still booked) do not
count either way.

Pure: the services gather the inputs and store the result.
"""

from dataclasses import dataclass
from datetime import timedelta

BASE = 0.05
PRIOR_NOSHOW_WEIGHT = 0.40
LONG_LEAD_TIME = timedelta(days=14)
LONG_LEAD_POINTS = 0.10
UNCONFIRMED_POINTS = 0.20
# A reminder at least this long before the appointment gave the patient time to answer.
UNCONFIRMED_AFTER_OFFSET_MINUTES = 24 * 60
FLAG_POINTS = 0.05
FLAGS = ("low_literacy", "needs_interpreter")


@dataclass(frozen=True, slots=True)
class RiskInputs:
    prior_noshows: int
    prior_attended: int
    lead_time: timedelta
    unconfirmed_after_reminder: bool
    flags: tuple[str, ...] = ()


def risk_score(inputs: RiskInputs) -> tuple[float, dict]:
    """(score, factors): the score rounded to 3 places, and each term's points with
    the inputs that gave them."""
    prior = inputs.prior_noshows + inputs.prior_attended
    rate = inputs.prior_noshows / prior if prior else 0.0
    flags = sorted(flag for flag in inputs.flags if flag in FLAGS)
    factors = {
        "base": {"points": BASE},
        "prior_noshow_rate": {
            "points": round(PRIOR_NOSHOW_WEIGHT * rate, 3),
            "noshows": inputs.prior_noshows,
            "attended": inputs.prior_attended,
        },
        "long_lead_time": {
            "points": LONG_LEAD_POINTS if inputs.lead_time >= LONG_LEAD_TIME else 0.0,
            "lead_time_days": round(inputs.lead_time.total_seconds() / 86400, 1),
        },
        "unconfirmed_after_reminder": {
            "points": UNCONFIRMED_POINTS if inputs.unconfirmed_after_reminder else 0.0,
        },
        "flags": {"points": round(FLAG_POINTS * len(flags), 3), "flags": flags},
    }
    total = sum(factor["points"] for factor in factors.values())
    return round(min(1.0, max(0.0, total)), 3), factors
