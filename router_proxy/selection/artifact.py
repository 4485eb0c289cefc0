"""Trained selector artifacts: a directory with ``meta.json`` and ``arrays.npz``.

Never pickle: arrays are loaded with ``allow_pickle=False`` and metadata is plain JSON, so
an artifact from elsewhere cannot run code. ``meta.json`` records the algorithm, the models
(in array order), the encoder the embeddings came from (serving refuses another), the
format version, a hash of the training data and the training parameters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

FORMAT_VERSION = 1
META, ARRAYS = "meta.json", "arrays.npz"


class ArtifactError(ValueError):
    """An artifact that cannot serve: missing, damaged, or made for something else."""


@dataclass
class Artifact:
    algorithm: str
    models: list[str]
    encoder: str
    arrays: dict[str, npt.NDArray[Any]]
    data_hash: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # algorithm-specific metadata

    def save(self, directory: str | Path) -> Path:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = dict(self.arrays)
        np.savez_compressed(out / ARRAYS, allow_pickle=False, **arrays)
        meta = {
            "format_version": FORMAT_VERSION,
            "algorithm": self.algorithm,
            "models": self.models,
            "encoder": self.encoder,
            "data_hash": self.data_hash,
            "params": self.params,
            "extra": self.extra,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (out / META).write_text(json.dumps(meta, indent=2) + "\n")
        return out


def read_meta(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / META
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:
        raise ArtifactError(f"no artifact at '{directory}' ({META} is missing)") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {path}: {exc}") from None
    version = meta.get("format_version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise ArtifactError(
            f"{path}: format version {version} is not {FORMAT_VERSION}; "
            "retrain it with this version's `router-proxy train`"
        )
    assert isinstance(meta, dict)
    return dict(meta)


def load_artifact(directory: str | Path, algorithm: str) -> Artifact:
    meta = read_meta(directory)
    if meta.get("algorithm") != algorithm:
        raise ArtifactError(
            f"'{directory}' holds a '{meta.get('algorithm')}' artifact, not '{algorithm}'"
        )
    try:
        with np.load(Path(directory) / ARRAYS, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read {Path(directory) / ARRAYS}: {exc}") from None
    return Artifact(
        algorithm=algorithm,
        models=list(meta["models"]),
        encoder=str(meta["encoder"]),
        arrays=arrays,
        data_hash=str(meta.get("data_hash", "")),
        params=dict(meta.get("params") or {}),
        extra=dict(meta.get("extra") or {}),
    )


def check_fit(artifact: Artifact, candidates: tuple[str, ...], encoder: str) -> None:
    """Serving checks: the artifact knows the candidates and was made with this encoder."""
    unknown = [c for c in candidates if c not in artifact.models]
    if unknown:
        raise ArtifactError(
            f"the artifact has no data for candidate(s) {unknown}; it knows {artifact.models}"
        )
    if artifact.encoder != encoder:
        raise ArtifactError(
            f"the artifact was trained with encoder '{artifact.encoder}' but this gateway "
            f"runs '{encoder}'; retrain it or set `embeddings` to match"
        )
