"""The dashboard owns no models: whale subscriptions and their deliveries became alert rules (``alerts``) and the
delivery outbox (``notifications``) in migration 0002; 0003 removed their tables."""
