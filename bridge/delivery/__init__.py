"""Webhook delivery: how a request is built, and the dispatcher that sends the outbox."""
