"""Send an SMS, an email, a portal message or a call into the running project
through its real webhooks, signed as the provider would sign them; or play the
demo day (--scenario). See channels_app/simulation.py and config/demo_scenario.py."""

from django.core.management.base import BaseCommand, CommandError

from channels_app.models import Interaction
from channels_app.simulation import CALL_OUTCOMES, InboundSimulator, SimulationError
from config.demo_scenario import ScenarioError, practice_account, scenario_run
from contactcenter.blind_index import mrn_index
from contactcenter.models import ApiClient
from contactcenter.services import api_client_create, api_client_rotate_key
from patients.models import Channel, ContactPoint, Patient

KINDS = ("sms", "email", "portal", "call")
# The API client whose key the command issues for portal messages when none is given.
SIMULATOR_CLIENT = "simulate_inbound (demo portal)"


class Command(BaseCommand):
    help = (
        "Send an inbound SMS, email, portal message or call to the running project over "
        "HTTP, through the real webhooks and signed as the provider would; --scenario plays "
        "a short demo day. FROM is a patient's MRN (e.g. DEMO-1001) or any number or address."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", nargs="?", choices=KINDS)
        parser.add_argument("--scenario", action="store_true", help="Play the demo day.")
        parser.add_argument("--from", dest="sender", help="An MRN, a phone number or an address.")
        parser.add_argument("--to", help="The practice's number or mailbox (default: the first).")
        parser.add_argument("--body", default="", help="The message (or voicemail transcript).")
        parser.add_argument("--subject", default="", help="Email or portal subject.")
        parser.add_argument("--thread", default="", help="Portal thread id.")
        parser.add_argument(
            "--outcome",
            choices=CALL_OUTCOMES,
            default="voicemail",
            help="How far a call goes (default voicemail).",
        )
        parser.add_argument(
            "--key", default="0", help="The key a caller presses at a voice menu (default 0)."
        )
        parser.add_argument("--url", help="Where the project listens (default PUBLIC_BASE_URL).")
        parser.add_argument(
            "--api-key",
            default="",
            help="A portal:write key for portal messages (default: one issued for this command).",
        )
        parser.add_argument(
            "--timeout", type=float, default=30, help="Seconds to wait for the worker."
        )

    def handle(self, *args, kind, scenario, sender, to, body, url, timeout, **options):
        if scenario == bool(kind):
            raise CommandError("Give a kind (sms, email, portal, call) or --scenario, not both.")
        simulator = InboundSimulator(base_url=url, portal_api_key=options["api_key"])
        try:
            if scenario:
                scenario_run(simulator=simulator, timeout=timeout, on_line=self.stdout.write)
                self.stdout.write(self.style.SUCCESS("The day is played."))
                return
            if not sender:
                raise CommandError("--from is required: an MRN, a phone number or an address.")
            self._send_one(simulator, kind, sender=sender, to=to, body=body, options=options)
        except (SimulationError, ScenarioError) as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(
                f"Could not reach the project at {simulator.base_url} ({exc.__class__.__name__}). "
                "Is it running (make run)?"
            ) from exc

    def _send_one(self, simulator, kind, *, sender, to, body, options):
        if kind == "sms":
            sent = simulator.sms(
                sender=_address(sender, ContactPoint.Kind.PHONE),
                to=to or practice_account(Channel.SMS).address,
                body=body or "Hello, can I move my appointment?",
            )
            self._report(Channel.SMS, sent.provider_id)
        elif kind == "email":
            sent = simulator.email(
                sender=_address(sender, ContactPoint.Kind.EMAIL),
                to=to or practice_account(Channel.EMAIL).address,
                subject=options["subject"] or "A question",
                body=body or "Hello, could someone call me back?",
            )
            interaction = Interaction.objects.filter(email__message_id=sent.provider_id).first()
            self._report_interaction("email", sent.provider_id, interaction)
        elif kind == "portal":
            patient = _patient(sender)
            if patient is None:
                raise CommandError("A portal message comes from a patient: give an MRN.")
            if not simulator.portal_api_key:
                simulator.portal_api_key = _simulator_portal_key()
            sent = simulator.portal(
                patient_id=patient.pk,
                body=body or "Hello, I have a question about my results.",
                subject=options["subject"],
                thread_id=options["thread"],
            )
            self._report(Channel.PORTAL, sent.provider_id)
        else:
            sent = simulator.call(
                caller=_address(sender, ContactPoint.Kind.PHONE),
                to=to or practice_account(Channel.VOICE).address,
                outcome=options["outcome"],
                transcript=body or "Hello, please call me back about my appointment.",
                key=options["key"],
            )
            self._report(Channel.VOICE, sent.provider_id)

    def _report(self, channel, provider_id):
        interaction = Interaction.objects.filter(channel=channel, provider_id=provider_id).first()
        self._report_interaction(channel, provider_id, interaction)

    def _report_interaction(self, channel, provider_id, interaction):
        if interaction is None:
            self.stdout.write(f"{channel} {provider_id} accepted; nothing new was stored.")
            return
        self.stdout.write(
            self.style.SUCCESS(
                f"{channel} {provider_id} stored: interaction {interaction.pk} "
                f"in conversation {interaction.conversation_id}."
            )
        )


def _patient(reference):
    try:
        index = mrn_index(reference)
    except ValueError:
        return None
    return Patient.objects.filter(mrn_index=index).first()


def _address(reference, kind):
    """A patient's preferred phone or email when `reference` is an MRN, else itself."""
    patient = _patient(reference) if "@" not in reference else None
    if patient is None:
        return reference
    points = sorted(
        patient.contact_points.filter(kind=kind),
        key=lambda point: (not point.preferred, point.created_at),
    )
    if not points:
        raise CommandError(f"Patient {reference} has no {kind}.")
    return points[0].value


def _simulator_portal_key():
    client = ApiClient.objects.filter(name=SIMULATOR_CLIENT).first()
    if client is None:
        return api_client_create(name=SIMULATOR_CLIENT, scopes=[ApiClient.Scope.PORTAL_WRITE]).key
    return api_client_rotate_key(client=client).key
