"""Pure translations between the canonical chat shapes (protocol.py) and the other APIs
the gateway speaks: no I/O, no HTTP client, no engine, so surfaces, providers and the CLI
share them and tests call them directly.

- ``responses_*``: the OpenAI Responses API (request, answer, stream) <-> chat;
- ``chat_to_anthropic``: a chat request as a Messages request (the Anthropic provider),
  a chat completion as a Messages ``message`` and chat chunks as Messages stream events
  (the ``/v1/messages`` surface);
- ``anthropic_to_chat``: a Messages request as a chat request (the surface), a Messages
  ``message`` as a chat completion and Messages stream events as chat chunks (the
  provider); ``anthropic_types`` holds the Messages request shapes.
"""
