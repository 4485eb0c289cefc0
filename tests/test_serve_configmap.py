"""``router-proxy serve`` on a Kubernetes ConfigMap mount: the kubelet's atomic update (a
new timestamped folder, ``..data`` swapped by a rename, the old folder deleted) must reach
the running process through the file watcher, POST /admin/reload and SIGHUP alike.

``policy.yaml`` is a symlink through ``..data``; a process that resolved it at start
would keep reading the old folder, which is gone after the update.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.gateway_process import GatewayProcess

ADMIN = "admin-secret-key"
POLICY = """\
server:
  admin_keys: [{admin}]
  watch_config: {watch}
providers:
  mock: {{type: mock}}
models:
  small: {{provider: mock}}
  large: {{provider: mock}}
decisions:
  - {{name: default, when: true, route: {{candidates: [{default}]}}}}
"""
BODY = {"model": "auto", "messages": [{"role": "user", "content": "hello"}]}


class ConfigMapMount:
    """A folder laid out as the kubelet lays out a ConfigMap volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir()
        self.version = 0

    @property
    def policy(self) -> Path:
        return self.root / "policy.yaml"

    def publish(self, text: str) -> None:
        """The kubelet's update: new folder, ``..data_tmp`` renamed over ``..data``, the
        old folder deleted. The first call also makes the ``policy.yaml`` symlink."""
        old = (self.root / "..data").readlink() if self.version else None
        self.version += 1
        folder = self.root / f"..2026_01_01_v{self.version}"
        folder.mkdir()
        (folder / "policy.yaml").write_text(text)
        (self.root / "..data_tmp").symlink_to(folder.name)
        os.rename(self.root / "..data_tmp", self.root / "..data")
        if old is None:
            self.policy.symlink_to("..data/policy.yaml")
        else:
            shutil.rmtree(self.root / old)


def policy(default: str, watch: bool) -> str:
    return POLICY.format(admin=ADMIN, watch=str(watch).lower(), default=default)


def gateway_on(mount: ConfigMapMount, workdir: Path) -> GatewayProcess:
    gateway = GatewayProcess("", workdir)  # its own policy file is not used
    gateway.config = mount.policy  # `serve --config cm/policy.yaml`, the symlink
    return gateway


def model_of(client: httpx.Client) -> str:
    response = client.post("/v1/chat/completions", json=BODY)
    assert response.status_code == 200, response.text
    return response.headers["x-router-model"]


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_the_file_watcher_sees_a_configmap_update(tmp_path: Path) -> None:
    mount = ConfigMapMount(tmp_path / "cm")
    mount.publish(policy("small", watch=True))
    with (
        gateway_on(mount, tmp_path) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        assert model_of(client) == "small"
        for update in ("large", "small"):  # the watch outlives the folder it started on
            time.sleep(0.3)  # let the watcher settle before the swap
            mount.publish(policy(update, watch=True))
            wait_for(
                lambda: model_of(client) == update,  # noqa: B023 (used before the next loop)
                f"the ConfigMap update to {update} was not reloaded:\n{gateway.output()}",
            )


def test_admin_reload_and_sighup_read_the_updated_configmap(tmp_path: Path) -> None:
    mount = ConfigMapMount(tmp_path / "cm")
    mount.publish(policy("small", watch=False))  # only the explicit triggers reload
    with (
        gateway_on(mount, tmp_path) as gateway,
        httpx.Client(base_url=gateway.base_url, timeout=10) as client,
    ):
        assert model_of(client) == "small"
        mount.publish(policy("large", watch=False))
        assert model_of(client) == "small"  # nothing reloads by itself
        headers = {"authorization": f"Bearer {ADMIN}"}
        response = client.post("/admin/reload", headers=headers)
        assert response.status_code == 200, response.text
        assert model_of(client) == "large"

        mount.publish(policy("small", watch=False))
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGHUP)
        wait_for(
            lambda: model_of(client) == "small",
            f"SIGHUP did not reload the ConfigMap update:\n{gateway.output()}",
        )


def test_a_path_through_the_data_link_is_watched_at_the_configmap_folder(
    tmp_path: Path,
) -> None:
    """`--config cm/..data/policy.yaml`: its parent is the version folder behind the link,
    which is replaced, never changed; the ConfigMap's own folder is watched instead."""
    from router_proxy.reload import watched_folder

    mount = ConfigMapMount(tmp_path / "cm")
    mount.publish(policy("small", watch=True))
    assert watched_folder(mount.root / "..data" / "policy.yaml") == mount.root
    assert watched_folder(mount.policy) == mount.root
    gateway = GatewayProcess("", tmp_path)
    gateway.config = mount.root / "..data" / "policy.yaml"
    with gateway, httpx.Client(base_url=gateway.base_url, timeout=10) as client:
        assert model_of(client) == "small"
        for update in ("large", "small", "large"):  # each swap, not only the first
            time.sleep(0.3)
            mount.publish(policy(update, watch=True))
            wait_for(
                lambda: model_of(client) == update,  # noqa: B023 (used before the next loop)
                f"the ConfigMap update to {update} was not reloaded:\n{gateway.output()}",
            )
