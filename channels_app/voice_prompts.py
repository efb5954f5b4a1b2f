"""What callers hear on the phone line and read in its texts, in each language
the line speaks. Plain sentences, filled in with str.format; no patient data is
ever spoken before the caller is verified by a person."""

# Twilio's language codes for <Say> and for speech recognition in <Gather>.
TWILIO_LANGUAGE = {"en": "en-US", "es": "es-US"}
PERSON_KEY = "0"
# The key that switches the menu to the other language; never a menu choice (1 to 4).
LANGUAGE_KEY = "9"
CALLBACK_KEY = "1"
# Replies to the missed-call text that ask for a callback (whole message, any case).
CALLBACK_TEXT_KEYWORDS = {"CALL", "CALL ME", "CALLBACK", "LLAMAR", "LLAMENME", "LLÁMENME"}

_TEXT = {
    "en": {
        "greeting": "Thank you for calling {practice}.",
        "emergency": "If this is a medical emergency, hang up and dial 911.",
        "switch_language": "For English, press 9.",
        "choice": "For {label}, press {key}.",
        "person": "To speak with a person, press 0 at any time.",
        "or_say": "You can also say what you need.",
        "not_understood": "Sorry, I did not get that.",
        "closed": "We are closed now. Please leave a message after the tone and we will "
        "call you back when we open.",
        "busy": "Everyone is busy. Please leave a message after the tone.",
        "position": "You are number {position} in line.",
        "wait_one": "The expected wait is about 1 minute.",
        "wait_many": "The expected wait is about {minutes} minutes.",
        "offer": "Press 1 and we will call you back. You keep your place in line.",
        "callback_confirmed": "Thank you. We will call you back at this number within "
        "{minutes} minutes, and you keep your place in line. Goodbye.",
        "callback_pending": "We already have your request for a call back, and you keep "
        "your place: number {position} in line. We will call you within {minutes} minutes. "
        "Goodbye.",
        "callback_intro": "Hello, this is {practice} returning your call. Please hold while "
        "we connect you.",
        "missed_call_text": "{practice}: sorry we missed your call. Reply CALL and we will "
        "call you back, or reply to this text with your question.",
        "callback_text_confirmed": "{practice}: thank you, we will call you back within "
        "{minutes} minutes.",
        "not_in_service": "This number is not in service.",
        # Spoken words that mean "a person" or "the other language".
        "person_words": "person, operator, agent, representative, someone, human",
        "language_words": "español, spanish",
    },
    "es": {
        "greeting": "Gracias por llamar a {practice}.",
        "emergency": "Si se trata de una emergencia médica, cuelgue y marque el 911.",
        "switch_language": "Para español, oprima 9.",
        "choice": "Para {label}, oprima {key}.",
        "person": "Para hablar con una persona, oprima 0 en cualquier momento.",
        "or_say": "También puede decir lo que necesita.",
        "not_understood": "Perdone, no le entendí.",
        "closed": "En este momento estamos cerrados. Deje un mensaje después del tono y le "
        "llamaremos cuando abramos.",
        "busy": "Todos están ocupados. Deje un mensaje después del tono.",
        "position": "Usted es el número {position} en la fila.",
        "wait_one": "La espera es de un minuto aproximadamente.",
        "wait_many": "La espera es de unos {minutes} minutos.",
        "offer": "Oprima 1 y le devolveremos la llamada. Usted conserva su lugar en la fila.",
        "callback_confirmed": "Gracias. Le llamaremos a este número dentro de {minutes} "
        "minutos y conserva su lugar en la fila. Adiós.",
        "callback_pending": "Ya tenemos su solicitud de devolución de llamada y conserva su "
        "lugar: número {position} en la fila. Le llamaremos dentro de {minutes} minutos. "
        "Adiós.",
        "callback_intro": "Hola, le llama {practice} para devolverle la llamada. Espere "
        "mientras le comunicamos.",
        "missed_call_text": "{practice}: lamentamos no haber atendido su llamada. Responda "
        "LLAMAR y le devolveremos la llamada, o escríbanos aquí su pregunta.",
        "callback_text_confirmed": "{practice}: gracias, le llamaremos dentro de {minutes} "
        "minutos.",
        "not_in_service": "Este número no está en servicio.",
        "person_words": "persona, operador, operadora, agente, alguien",
        "language_words": "english, inglés",
    },
}


def other_language(language):
    return "es" if language == "en" else "en"


def text(language, name, **values):
    return _TEXT[language][name].format(**values)


def words(language, name):
    return [word.strip() for word in _TEXT[language][name].split(",") if word.strip()]


def language_of(preferred):
    """The line's language for a patient's preferred language ("es", "es-MX", ...)."""
    code = (preferred or "").split("-")[0].lower()
    return code if code in _TEXT else "en"
