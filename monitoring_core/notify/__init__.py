"""Notifications: channels (Apprise URLs), message templates, the outbox and its delivery."""
