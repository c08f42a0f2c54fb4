"""The ASGI web app: sign-in, the supervisor, collector and back-office pages with their JSON
API, Twilio webhooks and the payload codec endpoint for Temporal's web UI."""
