"""The HTTP layer: the app factory, OpenAI-compatible routes, admin and health routes."""
