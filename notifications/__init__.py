"""Notifications: each user's destinations (e-mail, SMS, Telegram, webhook, in-app) and the delivery outbox."""
