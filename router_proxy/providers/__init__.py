"""Provider adapters: translate OpenAI-format calls to a backend's wire format."""
