"""The ASGI web app: Twilio webhooks (and, later, the supervisor and collector pages)."""
