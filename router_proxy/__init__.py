"""router-proxy: an OpenAI-compatible gateway that routes each request by YAML policy."""

__version__ = "0.1.0"
