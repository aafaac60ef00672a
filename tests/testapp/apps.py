from django.apps import AppConfig
from django.db.models.signals import post_migrate

# The people the test flows escalate to: an escalation to somebody who does
# not exist fails its job, as it would on a real site.
PEOPLE = ("alice", "bob", "ops")
GROUPS = ("reviewers",)


def create_people(sender, using="default", **kwargs):
    """After migrate, and after each flush between transactional tests."""
    from django.contrib.auth.models import Group, User

    for username in PEOPLE:
        User.objects.using(using).get_or_create(username=username)
    for name in GROUPS:
        Group.objects.using(using).get_or_create(name=name)


class TestAppConfig(AppConfig):
    name = "tests.testapp"
    label = "testapp"

    def ready(self) -> None:
        from django.apps import apps

        # This app has no models, so post_migrate is never sent for it: hook auth's.
        post_migrate.connect(create_people, sender=apps.get_app_config("auth"))
