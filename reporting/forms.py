from django import forms

COMMENT_MAX_LENGTH = 2000


class SurveyAnswerForm(forms.Form):
    """The survey page's one question, and an optional comment."""

    score = forms.TypedChoiceField(
        choices=[
            (1, "1 (very unsatisfied)"),
            (2, "2"),
            (3, "3"),
            (4, "4"),
            (5, "5 (very satisfied)"),
        ],
        coerce=int,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Please choose a score from 1 to 5.",
            "invalid_choice": "Please choose a score from 1 to 5.",
        },
    )
    comment = forms.CharField(
        required=False,
        max_length=COMMENT_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
