"""The API surfaces the benchmark can drive: path, wrk script and what a good answer holds.

The request of each surface is written once, in its wrk script (``post*.lua``); the
readiness probes and the streaming client read it from there, so they cannot drift apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROMPT = "Write a python function that reverses a list"

_BODY_RE = re.compile(r"^wrk\.body\s*=\s*'(.*)'\s*$", re.M)
_HEADER_RE = re.compile(r'^wrk\.headers\["([^"]+)"\]\s*=\s*"([^"]*)"\s*$', re.M)


@dataclass(frozen=True)
class Surface:
    name: str
    path: str
    script: Path
    marker: bytes  # a 200 answer of this surface's shape contains it

    @cached_property
    def _lua(self) -> str:
        return self.script.read_text()

    @property
    def body(self) -> bytes:
        found = _BODY_RE.search(self._lua)
        if found is None:
            raise ValueError(f"{self.script} sets no wrk.body = '...'")
        return found[1].encode()

    @property
    def headers(self) -> dict[str, str]:
        return {name.lower(): value for name, value in _HEADER_RE.findall(self._lua)}

    def varied_script(self, out_dir: Path) -> Path:
        """A wrk script sending the same request with a prompt unique to each request, so an
        embedding cache cannot turn the encoder into a hash lookup. Costs wrk a little Lua
        per request, the same for every target."""
        body = self.body.decode()
        if PROMPT not in body:
            raise ValueError(f"{self.script}: the body does not contain {PROMPT!r}")
        head, tail = body.split(PROMPT, 1)
        lines = [f"-- generated from {self.script.name}: the prompt varies per request"]
        lines += [line for line in self._lua.splitlines() if line.startswith("wrk.")]
        lines += [
            "local threads, n = 0, 0",
            'function setup(thread) threads = threads + 1; thread:set("tid", threads) end',
            "function request()",
            "  n = n + 1",
            f"  local body = {_lua_str(head + PROMPT + ' #')} .. tid .. '-' .. n"
            f" .. {_lua_str(tail)}",
            "  return wrk.format(nil, nil, nil, body)",
            "end",
        ]
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / f"varied_{self.name}.lua"
        path.write_text("\n".join(lines) + "\n")
        return path


def _lua_str(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


CHAT = Surface("chat", "/v1/chat/completions", HERE / "post.lua", b'"choices"')
SURFACES: dict[str, Surface] = {
    s.name: s
    for s in (
        CHAT,
        Surface("responses", "/v1/responses", HERE / "post_responses.lua", b'"output"'),
        Surface("messages", "/v1/messages", HERE / "post_messages.lua", b'"content"'),
    )
}
