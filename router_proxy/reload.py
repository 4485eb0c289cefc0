"""Live policy: rebuild and swap the runtime when the policy changes, without a restart.

Triggers: the file changing on disk (watchfiles; Kubernetes ConfigMap updates included,
which replace a symlink rather than write the file), ``POST /admin/reload`` and SIGHUP.
A new config is loaded and fully built off the event loop, started, then swapped in at
once. An invalid one is refused: its errors (with YAML paths) are logged and counted,
and the old config keeps serving.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import watchfiles

from router_proxy.config.errors import ConfigError
from router_proxy.config.load import load_config
from router_proxy.runtime import Runtime, RuntimeSlot

logger = logging.getLogger("router_proxy.reload")


@dataclass(frozen=True)
class ReloadOutcome:
    ok: bool
    generation: int
    errors: tuple[str, ...] = ()
    changed: bool = True


def file_digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Reloader:
    def __init__(self, slot: RuntimeSlot, path: Path, env: Mapping[str, str] | None = None) -> None:
        self.slot = slot
        self.path = path
        self.env = env
        self._lock = asyncio.Lock()
        self._digest = file_digest(path)
        # The last reload was refused: the log's last word on the file is "refused".
        self._refused = False

    async def reload(self, trigger: str, *, only_if_changed: bool = False) -> ReloadOutcome:
        async with self._lock:  # one reload at a time; later triggers see its result
            current = self.slot.current
            digest = await asyncio.to_thread(file_digest, self.path)
            if only_if_changed and digest == self._digest:
                if self._refused:  # fixed back to what is serving: say so
                    self._refused = False
                    logger.info(
                        "policy file is valid again: it matches generation %d, which kept serving",
                        current.generation,
                    )
                return ReloadOutcome(True, current.generation, changed=False)
            try:
                runtime = await asyncio.to_thread(self._build)
            except ConfigError as exc:
                return self._refuse(trigger, current, [str(i) for i in exc.issues])
            await runtime.start()
            self._digest, self._refused = digest, False
            self.slot.swap(runtime)
            current.metrics.config_reloads.labels(trigger, "success").inc()
            current.metrics.config_generation.set(runtime.generation)
            logger.info("policy reloaded (%s): generation %d", trigger, runtime.generation)
            return ReloadOutcome(True, runtime.generation)

    def _build(self) -> Runtime:
        config, _ = load_config(self.path, env=self.env)
        return Runtime.build(config, previous=self.slot.current)

    def _refuse(self, trigger: str, current: Runtime, errors: list[str]) -> ReloadOutcome:
        self._refused = True
        current.metrics.config_reloads.labels(trigger, "failure").inc()
        logger.error(
            "policy reload (%s) refused; generation %d keeps serving:\n  %s",
            trigger,
            current.generation,
            "\n  ".join(errors),
        )
        return ReloadOutcome(False, current.generation, tuple(errors))

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload whenever the file's content changes. The parent folder is watched, so
        editors that replace the file and ConfigMap symlink swaps are both seen."""
        async for _changes in watchfiles.awatch(
            watched_folder(self.path), stop_event=stop, debounce=200, recursive=False
        ):
            try:
                await self.reload("file", only_if_changed=True)
            except Exception:  # a background loop: one bad reload must not end watching
                logger.exception("policy reload from file failed")


def watched_folder(path: Path) -> Path:
    """The nearest folder above ``path`` that is not itself a symlink: for a path given
    through a ConfigMap's ``..data`` link, the ConfigMap's folder, where the link is
    swapped (the version folder behind the link is replaced, never changed)."""
    folder = path.absolute().parent
    while folder.is_symlink():
        folder = folder.parent
    return folder
