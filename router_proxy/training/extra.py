"""The ``train`` extra: what training, evaluation and data generation need beyond the
server (tqdm's progress bars; matplotlib for ``eval --plot``).

Nothing here imports them at module import: the CLI registers every command at start-up,
and ``router-proxy serve`` / ``validate`` / ``explain`` must not load them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tqdm import tqdm

INSTALL = "pip install 'router-proxy[train]'"


class MissingExtra(RuntimeError):
    """A dependency of the ``train`` extra that is not installed; the message names the
    install command."""


def missing(package: str, needed_by: str) -> MissingExtra:
    return MissingExtra(f"{needed_by} needs {package}, which is not installed: {INSTALL}")


def require_tqdm(needed_by: str = "progress bars") -> type[tqdm[Any]]:
    """tqdm's progress bar class, or MissingExtra naming the ``train`` extra."""
    try:
        from tqdm import tqdm
    except ImportError:
        raise missing("tqdm", needed_by) from None
    return tqdm
