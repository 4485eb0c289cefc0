"""Pure translations between the canonical chat request (protocol.py) and other OpenAI
API shapes: no HTTP and no engine here, so the server's surfaces (and the CLI) can share
them and tests can call them directly."""
