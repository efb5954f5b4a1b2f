"""Programmatic part of the training set: for each intent, sentence frames in
English and Spanish with slots (days, times, medicines, tests, forms...), wrapped
in greetings and sign-offs, then roughened the way patients text (dropped accents
and capitals, shorthand, a typo or two). Deterministic for a given seed.

The held-out evaluation set (heldout_*.tsv) is written by hand separately and
never produced from these frames."""

import random

DAYS_EN = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "next week",
    "tomorrow",
    "this week",
    "the 14th",
    "march 3",
    "next month",
]
DAYS_ES = [
    "el lunes",
    "el martes",
    "el miércoles",
    "el jueves",
    "el viernes",
    "el sábado",
    "la próxima semana",
    "mañana",
    "esta semana",
    "el día 14",
    "el 3 de marzo",
    "el mes que viene",
]
TIMES_EN = ["in the morning", "in the afternoon", "at 9", "at 2:30", "after 4pm", "early", ""]
TIMES_ES = ["en la mañana", "en la tarde", "a las 9", "a las 2:30", "después de las 4", ""]
WHO_EN = [
    "dr smith",
    "the doctor",
    "my doctor",
    "the nurse practitioner",
    "dr patel",
    "my provider",
    "dr. lopez",
]
WHO_ES = ["el doctor", "la doctora", "mi doctor", "la dra. garcía", "el dr. smith", "la enfermera"]
MEDS = [
    "lisinopril",
    "metformin",
    "atorvastatin",
    "amlodipine",
    "levothyroxine",
    "albuterol",
    "sertraline",
    "omeprazole",
    "losartan",
    "gabapentin",
    "insulin",
    "my inhaler",
    "my blood pressure pills",
]
MEDS_ES = [
    "lisinopril",
    "metformina",
    "atorvastatina",
    "amlodipino",
    "levotiroxina",
    "albuterol",
    "sertralina",
    "omeprazol",
    "losartán",
    "insulina",
    "mi inhalador",
    "las pastillas de la presión",
]
PHARMACIES = ["cvs", "walgreens", "rite aid", "the walmart pharmacy", "costco pharmacy"]
TESTS_EN = [
    "blood work",
    "lab results",
    "mri",
    "x-ray",
    "biopsy",
    "cholesterol test",
    "a1c",
    "urine test",
    "ct scan",
    "mammogram",
    "covid test",
    "ultrasound",
]
TESTS_ES = [
    "análisis de sangre",
    "resultados de laboratorio",
    "resonancia",
    "radiografía",
    "biopsia",
    "prueba de colesterol",
    "examen de orina",
    "tomografía",
    "mamografía",
    "prueba de covid",
    "ultrasonido",
]
FORMS_EN = [
    "medical records",
    "immunization record",
    "vaccine records",
    "school physical form",
    "fmla paperwork",
    "disability form",
    "work note",
    "doctor's note",
    "records release form",
    "sports physical form",
]
FORMS_ES = [
    "expediente médico",
    "registro de vacunas",
    "cartilla de vacunación",
    "formulario de la escuela",
    "papeles del trabajo",
    "nota médica",
    "carta para el trabajo",
    "formulario de incapacidad",
    "mis récords médicos",
]
SYMPTOMS_EN = [
    "a rash",
    "a sore throat",
    "a fever",
    "a cough",
    "back pain",
    "headaches",
    "an earache",
    "dizziness",
    "a swollen ankle",
    "stomach pain",
    "diarrhea",
    "side effects from my medication",
    "a bad cold",
    "burning when i pee",
]
SYMPTOMS_ES = [
    "un sarpullido",
    "dolor de garganta",
    "fiebre",
    "tos",
    "dolor de espalda",
    "dolores de cabeza",
    "dolor de oído",
    "mareos",
    "el tobillo hinchado",
    "dolor de estómago",
    "diarrea",
    "efectos secundarios del medicamento",
    "un resfriado fuerte",
    "ardor al orinar",
]

FRAMES_EN = {
    "appointment_book": [
        "i need to make an appointment {day} {time}",
        "can i schedule an appointment with {who}",
        "i would like to book a visit {day}",
        "do you have any openings {day} {time}",
        "i need to see {who} {day}",
        "is there availability {day} for a checkup",
        "can i get in to see {who} for a physical",
        "i want to set up a new patient appointment",
        "how soon can i be seen by {who}",
        "please book me an appointment {day} {time}",
        "id like to come in {day} if there is a slot",
        "can you fit me in {day}",
        "need an appt for my annual physical",
        "my son needs a well child visit, what do you have {day}",
        "schedule me with {who} please",
        "can i make a follow up appointment",
    ],
    "appointment_reschedule": [
        "i need to reschedule my appointment {day}",
        "can i move my appointment to {day} {time}",
        "i can't make it {day}, can we change the time",
        "please change my appointment with {who} to another day",
        "something came up, can i switch my appointment to {day}",
        "is it possible to push my appointment back a week",
        "i need a different time for my visit {day}",
        "can we move my appt from {day} to later",
        "could i come in earlier than my scheduled appointment",
        "reschedule please, {day} doesn't work for me anymore",
        "i need to change the date of my appointment",
        "can i move it to {time} instead",
    ],
    "appointment_cancel": [
        "i need to cancel my appointment {day}",
        "please cancel my visit with {who}",
        "cancel my appointment, i won't be able to come",
        "i'm not coming {day}, please cancel",
        "i want to cancel the appointment for my daughter {day}",
        "we have to cancel {day}'s appointment",
        "please take me off the schedule {day}",
        "i no longer need the appointment {day}, cancel it",
        "cancel my appt with {who}",
        "i won't make it {day}, go ahead and cancel",
    ],
    "appointment_confirm": [
        "yes i will be there {day}",
        "confirming my appointment {day} {time}",
        "i confirm my appointment with {who}",
        "yes confirmed, see you {day}",
        "just confirming i'm still on for {day}",
        "is my appointment still {day} {time}",
        "can you confirm what time my appointment is {day}",
        "i'll be there, thanks for the reminder",
        "got the reminder, i will be at my appointment",
        "yes that time works, i'll come {day}",
        "do i still have an appointment {day}",
    ],
    "refill": [
        "i need a refill on my {med}",
        "can you refill my {med} prescription",
        "i'm almost out of {med}, can you send a refill to {pharmacy}",
        "please call in my {med} to {pharmacy}",
        "my {med} prescription ran out",
        "i need more {med}",
        "can {who} renew my prescription for {med}",
        "requesting a refill of {med} please",
        "the pharmacy says i have no refills left on {med}",
        "can you send my prescription to {pharmacy}",
        "i need my medication refilled",
        "out of {med} since yesterday, need a refill",
    ],
    "billing": [
        "i have a question about my bill",
        "why was i charged for my visit {day}",
        "i got a bill but my insurance should have covered it",
        "how much do i owe",
        "can i pay my balance online",
        "i was billed twice for the same visit",
        "do you accept {insurance}",
        "my insurance changed, i need to update it",
        "can i set up a payment plan",
        "i received a statement i don't understand",
        "what is the copay for a visit",
        "the charge on my account is wrong",
        "i need an itemized receipt for my insurance",
        "can you resubmit the claim to my insurance",
        "is {insurance} in network",
    ],
    "test_results": [
        "are my {test} results back",
        "when will i get the results of my {test}",
        "can someone call me about my {test}",
        "i haven't heard back about my {test}",
        "did {who} look at my {test} yet",
        "what did my {test} show",
        "i saw my {test} in the portal, what does it mean",
        "i'm waiting on my {test} results",
        "any news on my {test}",
        "can i get a copy of my {test} results",
    ],
    "records_forms": [
        "i need a copy of my {form}",
        "can you fill out my {form}",
        "how do i request my {form}",
        "i need {who} to sign my {form}",
        "can you fax my {form} to my new doctor",
        "where do i send the {form}",
        "i dropped off a {form}, is it ready",
        "please send my {form} to my email",
        "my employer needs a {form}",
        "i need my {form} transferred to another clinic",
    ],
    "clinical_question": [
        "i have {symptom}, should i come in",
        "is it normal to have {symptom} after starting {med}",
        "can i take ibuprofen with {med}",
        "i've had {symptom} for three days, what should i do",
        "my child has {symptom}, what do you recommend",
        "should i stop taking {med} because of {symptom}",
        "how much {med} should i take",
        "i think i have an infection, what should i do",
        "is {symptom} a side effect of {med}",
        "question for the nurse about {symptom}",
        "can i get the flu shot if i have {symptom}",
        "my blood sugar has been high, should i change my {med}",
        "i've had {symptom} since last night",
        "my {part} has been swelling for a few days",
        "my {part} hurts when i walk",
        "my {reading} was {number} this morning",
        "should i go to the er or urgent care for {symptom}",
        "can i exercise with {symptom}",
        "what should i do about {symptom}",
        "the pain in my {part} is getting worse",
        "my {part} is red and swollen",
        "i feel weak and tired all the time",
    ],
    "general_info": [
        "what time do you open {day}",
        "what are your hours",
        "are you open {day}",
        "what is your address",
        "where is the office located",
        "where do i park",
        "is there parking at the clinic",
        "what is your fax number",
        "how do i log into the patient portal",
        "i forgot my portal password",
        "what time do you close {day}",
        "are you open on holidays",
        "how do i get to your office",
        "do you have a fax number i can send records to",
        "how do i sign up for the portal",
        "is the office open during lunch",
        "what's the phone number for the front desk",
        "do you have weekend hours",
    ],
    "complaint": [
        "i waited over an hour {day} and no one told me anything",
        "the front desk staff was very rude to me",
        "i am unhappy with how i was treated",
        "i want to file a complaint about my visit",
        "nobody ever calls me back, this is unacceptable",
        "i've left three messages and no one answered",
        "the service at your office is terrible",
        "i'm very disappointed with {who}",
        "i want to speak to a manager about my experience",
        "thank you, the staff was wonderful {day}",
        "great visit, {who} was very kind",
        "i want to leave feedback about my visit",
        "no one has called me back in {waited}",
        "i've been waiting {waited} for a call back",
        "{who} was rude and didn't listen",
    ],
    "other": [
        "ok",
        "thanks",
        "thank you",
        "who is this",
        "wrong number",
        "hello",
        "hi there",
        "sorry wrong person",
        "ok got it",
        "test",
        "never mind",
        "sounds good",
        "call me back",
        "please call me",
        "is anyone there",
        "good morning",
    ],
}

FRAMES_ES = {
    "appointment_book": [
        "necesito hacer una cita {day} {time}",
        "quiero sacar una cita con {who}",
        "me pueden dar una cita {day}",
        "hay citas disponibles {day} {time}",
        "necesito ver a {who} {day}",
        "quisiera agendar una cita para un chequeo",
        "cómo hago una cita para mi hijo",
        "quiero una cita para el examen físico anual",
        "cuándo me pueden atender",
        "me agenda una cita por favor",
        "soy paciente nuevo y quiero una cita",
        "necesito cita de seguimiento con {who}",
        "tienen espacio {day} para una consulta",
    ],
    "appointment_reschedule": [
        "necesito cambiar mi cita {day}",
        "puedo mover mi cita para {day} {time}",
        "no puedo ir {day}, me pueden cambiar la hora",
        "quiero reprogramar mi cita con {who}",
        "se me presentó algo, puedo cambiar la cita para {day}",
        "me pueden pasar la cita a otro día",
        "necesito otra hora para mi cita",
        "podemos cambiar la cita de {day} a más tarde",
        "quisiera adelantar mi cita",
        "cambiar la fecha de mi cita por favor",
    ],
    "appointment_cancel": [
        "necesito cancelar mi cita {day}",
        "por favor cancelen mi cita con {who}",
        "cancele mi cita, no voy a poder ir",
        "no voy a ir {day}, cancelen por favor",
        "quiero cancelar la cita de mi hija {day}",
        "ya no necesito la cita {day}",
        "anulen mi cita por favor",
        "cancelo la cita de {day}",
        "no podré asistir {day}, favor de cancelar",
    ],
    "appointment_confirm": [
        "sí, ahí estaré {day}",
        "confirmo mi cita {day} {time}",
        "confirmo la cita con {who}",
        "sí confirmado, nos vemos {day}",
        "solo quiero confirmar que mi cita sigue {day}",
        "mi cita sigue siendo {day} {time}",
        "me confirman a qué hora es mi cita",
        "ahí estaré, gracias por el recordatorio",
        "recibí el recordatorio, sí voy a ir",
        "sí me queda bien ese horario",
        "todavía tengo cita {day}",
    ],
    "refill": [
        "necesito un resurtido de {med}",
        "me pueden renovar la receta de {med}",
        "se me está acabando la {med}, mándenla a {pharmacy}",
        "necesito más {med}",
        "mi receta de {med} se terminó",
        "pueden llamar a la farmacia {pharmacy} para mi {med}",
        "quiero pedir un refill de {med}",
        "la farmacia dice que ya no tengo resurtidos de {med}",
        "necesito que me manden la receta a {pharmacy}",
        "me quedé sin {med}, necesito otra receta",
        "necesito mis medicinas",
    ],
    "billing": [
        "tengo una pregunta sobre mi factura",
        "por qué me cobraron la consulta de {day}",
        "me llegó una cuenta pero mi seguro la debía cubrir",
        "cuánto debo",
        "puedo pagar mi saldo en línea",
        "me cobraron dos veces la misma visita",
        "aceptan {insurance}",
        "cambié de seguro, necesito actualizarlo",
        "puedo hacer un plan de pagos",
        "recibí un estado de cuenta que no entiendo",
        "cuánto es el copago",
        "el cobro en mi cuenta está mal",
        "necesito un recibo para mi seguro",
        "aceptan medicaid",
    ],
    "test_results": [
        "ya están los resultados de mi {test}",
        "cuándo me dan los resultados de la {test}",
        "alguien me puede llamar por mis {test}",
        "no me han dicho nada de mis {test}",
        "ya revisó {who} mis {test}",
        "qué salió en mis {test}",
        "vi mis {test} en el portal, qué significan",
        "estoy esperando los resultados de {test}",
        "hay noticias de mis {test}",
    ],
    "records_forms": [
        "necesito una copia de mi {form}",
        "me pueden llenar el {form}",
        "cómo pido mi {form}",
        "necesito que {who} firme mi {form}",
        "pueden mandar por fax mi {form} a mi nuevo doctor",
        "dejé un {form}, ya está listo",
        "mándenme mi {form} por correo",
        "mi trabajo necesita una {form}",
    ],
    "clinical_question": [
        "tengo {symptom}, debo ir a consulta",
        "es normal tener {symptom} después de empezar la {med}",
        "puedo tomar ibuprofeno con {med}",
        "llevo tres días con {symptom}, qué hago",
        "mi niño tiene {symptom}, qué me recomiendan",
        "debo dejar la {med} por {symptom}",
        "cuánta {med} debo tomar",
        "creo que tengo una infección, qué hago",
        "{symptom} es efecto secundario de {med}",
        "pregunta para la enfermera sobre {symptom}",
        "tengo el azúcar alta, debo cambiar la {med}",
        "tengo {symptom} desde anoche",
        "se me hincha {part_es} desde hace días",
        "me duele {part_es} cuando camino",
        "tengo {reading_es} en {number} hoy",
        "voy a urgencias o al doctor por {symptom}",
        "puedo hacer ejercicio con {symptom}",
        "qué hago con {symptom}",
        "el dolor de {part_es} está peor",
        "tengo {part_es} rojo e hinchado",
        "me siento débil y cansado todo el tiempo",
    ],
    "general_info": [
        "a qué hora abren {day}",
        "cuál es el horario",
        "están abiertos {day}",
        "cuál es la dirección",
        "dónde queda la clínica",
        "dónde me estaciono",
        "hay estacionamiento en la clínica",
        "cuál es el número de fax",
        "cómo entro al portal de pacientes",
        "olvidé mi contraseña del portal",
        "a qué hora cierran {day}",
        "abren en días festivos",
        "cómo llego a la oficina",
        "cómo me registro en el portal",
        "cuál es el teléfono de la recepción",
        "tienen horario el fin de semana",
    ],
    "complaint": [
        "esperé más de una hora {day} y nadie me dijo nada",
        "la recepcionista fue muy grosera conmigo",
        "no estoy contento con cómo me trataron",
        "quiero poner una queja sobre mi visita",
        "nadie me devuelve las llamadas, es inaceptable",
        "dejé tres mensajes y nadie contestó",
        "el servicio en su oficina es pésimo",
        "estoy muy decepcionada con {who}",
        "quiero hablar con un gerente sobre mi experiencia",
        "gracias, el personal fue muy amable {day}",
        "excelente visita, {who} fue muy atento",
        "nadie me ha llamado en {waited_es}",
        "llevo {waited_es} esperando que me llamen",
        "{who} fue grosero y no me escuchó",
    ],
    "other": [
        "ok",
        "gracias",
        "muchas gracias",
        "quién es",
        "número equivocado",
        "hola",
        "buenas",
        "perdón, me equivoqué",
        "ok entendido",
        "prueba",
        "olvídelo",
        "está bien",
        "llámenme",
        "hay alguien ahí",
        "buenos días",
    ],
}

PARTS_EN = [
    "knee",
    "foot",
    "feet",
    "leg",
    "arm",
    "wrist",
    "hand",
    "eye",
    "ear",
    "chest",
    "stomach",
    "back",
    "throat",
    "ankle",
    "incision",
]
PARTS_ES = [
    "la rodilla",
    "el pie",
    "los pies",
    "la pierna",
    "el brazo",
    "la muñeca",
    "la mano",
    "el ojo",
    "el oído",
    "el estómago",
    "la espalda",
    "la garganta",
    "el tobillo",
    "la herida",
]
READINGS_EN = ["blood pressure", "blood sugar", "glucose", "temperature", "oxygen", "heart rate"]
READINGS_ES = ["la presión", "el azúcar", "la glucosa", "la temperatura", "el oxígeno"]
NUMBERS = ["280", "160/100", "101.5", "39", "88", "45", "190/110", "350", "38.5"]

INSURANCE = [
    "aetna",
    "blue cross",
    "medicare",
    "medicaid",
    "cigna",
    "united healthcare",
    "humana",
    "kaiser",
]

OPENERS_EN = [
    "",
    "",
    "",
    "hi ",
    "hello ",
    "hey ",
    "good morning, ",
    "hi this is maria, ",
    "hello, my name is john. ",
    "hi it's me again ",
    "quick question: ",
]
CLOSERS_EN = [
    "",
    "",
    "",
    " thanks",
    " thank you",
    " please",
    " asap",
    "?",
    ".",
    " thx!",
    " when you get a chance",
    " - sent from my phone",
]
OPENERS_ES = [
    "",
    "",
    "",
    "hola ",
    "buenos días, ",
    "buenas tardes ",
    "hola soy carmen, ",
    "disculpe, ",
    "oiga ",
    "una pregunta: ",
]
CLOSERS_ES = [
    "",
    "",
    "",
    " gracias",
    " muchas gracias",
    " por favor",
    "?",
    ".",
    " cuando puedan",
    " bendiciones",
    " porfa",
]

# Shorthand and slips, applied at random to a rendered message.
ROUGHEN_EN = [
    ("you", "u"),
    ("please", "pls"),
    ("appointment", "appt"),
    ("tomorrow", "tmrw"),
    ("thanks", "thx"),
    ("prescription", "rx"),
    ("medication", "meds"),
    ("doctor", "dr"),
    ("your", "ur"),
    ("are", "r"),
    ("i'm", "im"),
    ("can't", "cant"),
    ("don't", "dont"),
    ("results", "resuts"),
    ("schedule", "schedual"),
    ("refill", "refil"),
    ("insurance", "insurence"),
    ("receive", "recieve"),
    ("tomorrow", "tommorow"),
    ("appointment", "appoitment"),
]
ROUGHEN_ES = [
    ("por favor", "porfa"),
    ("por favor", "xfa"),
    ("que", "q"),
    ("qué", "q"),
    ("para", "pa"),
    ("también", "tb"),
    ("porque", "xq"),
    ("dónde", "dnd"),
    ("cita", "sita"),
    ("receta", "reseta"),
    ("mañana", "mñn"),
    ("estoy", "toy"),
    ("gracias", "grax"),
    ("necesito", "nesesito"),
    ("hacer", "aser"),
    ("cuándo", "cuando"),
    ("resultados", "resultdos"),
]


def _typo(rng, text):
    """One slip of the thumb: a swapped, dropped or doubled letter in a long word."""
    words = text.split(" ")
    long_words = [i for i, word in enumerate(words) if len(word) > 4 and word.isalpha()]
    if not long_words:
        return text
    i = rng.choice(long_words)
    word = words[i]
    at = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        word = word[:at] + word[at + 1] + word[at] + word[at + 2 :]
    elif kind == 1:
        word = word[:at] + word[at + 1 :]
    else:
        word = word[:at] + word[at] + word[at:]
    words[i] = word
    return " ".join(words)


def _strip_accents(text):
    return text.translate(str.maketrans("áéíóúñü¿¡", "aeiounu  "))


def _roughen(rng, text, swaps):
    for before, after in swaps:
        if before in text and rng.random() < 0.35:
            text = text.replace(before, after)
    if rng.random() < 0.3:
        text = _typo(rng, text)
    if rng.random() < 0.5:
        text = _strip_accents(text)
    style = rng.random()
    if style < 0.15:
        text = text.upper()
    elif style < 0.55:
        text = text[:1].upper() + text[1:]
    return " ".join(text.split())


def _render(rng, frame, language):
    english = language == "en"
    slots = {
        "day": rng.choice(DAYS_EN if english else DAYS_ES),
        "time": rng.choice(TIMES_EN if english else TIMES_ES),
        "who": rng.choice(WHO_EN if english else WHO_ES),
        "med": rng.choice(MEDS if english else MEDS_ES),
        "pharmacy": rng.choice(PHARMACIES),
        "test": rng.choice(TESTS_EN if english else TESTS_ES),
        "form": rng.choice(FORMS_EN if english else FORMS_ES),
        "symptom": rng.choice(SYMPTOMS_EN if english else SYMPTOMS_ES),
        "insurance": rng.choice(INSURANCE),
        "part": rng.choice(PARTS_EN),
        "part_es": rng.choice(PARTS_ES),
        "reading": rng.choice(READINGS_EN),
        "reading_es": rng.choice(READINGS_ES),
        "number": rng.choice(NUMBERS),
        "waited": rng.choice(["two days", "a week", "3 days", "an hour", "forever"]),
        "waited_es": rng.choice(["dos días", "una semana", "3 días", "una hora"]),
    }
    body = frame.format(**slots)
    opener = rng.choice(OPENERS_EN if english else OPENERS_ES)
    closer = rng.choice(CLOSERS_EN if english else CLOSERS_ES)
    text = f"{opener}{body}{closer}"
    return _roughen(rng, text, ROUGHEN_EN if english else ROUGHEN_ES)


def generate(*, per_intent=60, seed=23):
    """[(text, intent, language)], per_intent messages per intent and language,
    without duplicates."""
    rng = random.Random(seed)  # noqa: S311 - reproducible data, not secrets
    rows = []
    for language, frames in (("en", FRAMES_EN), ("es", FRAMES_ES)):
        for intent, intent_frames in frames.items():
            seen = set()
            attempts = 0
            while len(seen) < per_intent and attempts < per_intent * 20:
                attempts += 1
                text = _render(rng, rng.choice(intent_frames), language)
                if text.lower() not in seen:
                    seen.add(text.lower())
                    rows.append((text, intent, language))
    return rows
