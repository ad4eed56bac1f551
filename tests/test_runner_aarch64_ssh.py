"""edgekit over SSH into a real arm64 rootfs (devlab's arm64-rootfs.sh: arm64 sshd, Python, tflite-runtime 2.14 and
ai-edge-litert 2.3, all under qemu): bench, on-device parity and the runtime: key, end to end."""
from __future__ import annotations

import pytest

from edgekit.devices import bench

pytestmark = [pytest.mark.device, pytest.mark.slow]  # qemu: the rootfs build once (~3-7 min), seconds per run


@pytest.mark.parametrize("flavour,runtime,version", [("tflite", "tflite_runtime", "2.14.0"),
                                                     ("litert", "ai_edge_litert", None)])
def test_bench_on_arm64_rootfs_over_ssh(arm64_ssh, devlab, flavour, runtime, version):
    (row,) = bench([devlab / "tiny.tflite"], arm64_ssh["url"], key_file=arm64_ssh["SSHD_KEY"],
                   known_hosts=arm64_ssh["SSHD_KNOWN_HOSTS"], python=arm64_ssh["python"][flavour], runs=5, warmup=1,
                   threads=2)
    assert row.ok, row.error
    assert row.machine == "aarch64" and row.runtime == runtime and (version is None or row.runtime_version == version)
    assert row.count == 5 and row.p50_ci_ms and row.p50_ci_ms[0] <= row.p50_ms <= row.p50_ci_ms[1]
    assert "Raspberry Pi 4" in row.cpu_model and row.cpu == "Cortex-A72"
