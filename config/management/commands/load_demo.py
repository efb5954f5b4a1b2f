from django.core.management.base import BaseCommand
from django.db import transaction

from config.demo import load_demo_data


class Command(BaseCommand):
    help = "Load demo staff, teams and patients (idempotent: a second run changes nothing)."

    def handle(self, *args, **options):
        with transaction.atomic():
            created = load_demo_data()
        self.stdout.write(f"Demo data loaded ({created} new objects).")
