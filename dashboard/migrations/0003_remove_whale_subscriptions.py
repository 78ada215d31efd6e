"""The old whale subscriptions and deliveries are gone (0002 moved them to alert rules and the outbox)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0002_subscriptions_to_alert_rules"),
    ]

    operations = [
        migrations.DeleteModel(name="AlertDelivery"),
        migrations.DeleteModel(name="AlertSubscription"),
    ]
