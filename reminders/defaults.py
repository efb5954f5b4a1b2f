"""The policy and templates that ship: created by migration 0002 and, for a database
emptied since (tests), by services.reminder_policy_create_default."""

DEFAULT_POLICY_NAME = "Default"

# (channel, language, body). SMS texts stay GSM-7 where the language allows, so a
# Spanish one turns UCS-2 only on a "sábado", and fits two segments either way.
DEFAULT_TEMPLATES = (
    (
        "sms",
        "en",
        "Hi $first_name, this is a reminder of your appointment on $date at $time "
        "at $location. Reply C to confirm or R to reschedule.",
    ),
    (
        "sms",
        "es",
        "Hola $first_name: cita el $date a las $time en $location. "
        "Responda C para confirmar o R para cambiarla.",
    ),
    (
        "email",
        "en",
        "Hello $first_name,\n\n"
        "This is a reminder of your appointment on $date at $time at $location.\n\n"
        "To confirm or reschedule, reply to this email or call us at $practice_phone.\n\n"
        "Thank you.",
    ),
    (
        "email",
        "es",
        "Hola $first_name:\n\n"
        "Le recordamos su cita el $date a las $time en $location.\n\n"
        "Para confirmarla o cambiarla, responda a este correo o llámenos al "
        "$practice_phone.\n\n"
        "Gracias.",
    ),
)
