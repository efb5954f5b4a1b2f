"""Demo data for `make run`. Each loader creates what is missing and leaves what
exists, so running it twice changes nothing. This module sits on top of the apps
(like urls.py) and lists their loaders in dependency order."""

from channels_app.demo import load_demo_channels
from contactcenter.demo_staff import load_demo_staff
from patients.demo import load_demo_patients

DEMO_LOADERS = [load_demo_staff, load_demo_patients, load_demo_channels]


def load_demo_data():
    return sum(loader() for loader in DEMO_LOADERS)
