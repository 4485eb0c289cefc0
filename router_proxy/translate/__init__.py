"""Pure mappings between the OpenAI chat-completions shapes and Anthropic's Messages API,
one module per direction (no I/O, no HTTP client):

- ``chat_to_anthropic``: a chat request as a Messages request (the Anthropic provider),
  a chat completion as a Messages ``message`` and chat chunks as Messages stream events
  (the ``/v1/messages`` surface);
- ``anthropic_to_chat``: a Messages request as a chat request (the surface), a Messages
  ``message`` as a chat completion and Messages stream events as chat chunks (the
  provider).

``anthropic_types`` holds the Messages request shapes the surface validates against.
"""
