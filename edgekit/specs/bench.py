"""ConnectSpec (how to reach a device, overriding its profile) and BenchSpec (``edgekit.bench``)."""
from __future__ import annotations

from typing import Any

from .._spec import Spec, option, spec


@spec
class ConnectSpec(Spec):
    """Per-call overrides of a device profile's connection settings."""

    python: str | None = option(None, help="Python on the device (overrides the profile's python:).")
    benchmark_binary: str | None = option(None, help="TFLite benchmark_model for devices without Python: a host file "
                                                     "(pushed) or a device path.")
    key_file: str | None = option(None, help="SSH private key.")
    known_hosts: str | None = option(None, help="known_hosts file (default: the profile's, else ~/.ssh/known_hosts).")
    accept_new_host_key: bool = option(False, help="Trust an SSH host key seen for the first time and store it in "
                                                   "known_hosts.")
    connect_timeout: float | None = option(None, help="Seconds (default: the profile's, else 10).")


@spec
class CheckSpec(ConnectSpec):
    """``edgekit.devices.check(device, ...)``: reach a device and probe what it can run."""

    device: Any = option(help="A profile name, local, ssh://user@host[:port] or adb://SERIAL.", argument=True,
                         metavar="NAME")


@spec
class BenchOptions(Spec):
    """What to measure, where and how (BenchSpec without the connection overrides). Value ranges and the rules
    across options are checked by ``edgekit.devices.bench`` itself (with its hints)."""

    artifacts: tuple[str, ...] = option(help="Artifacts (.tflite/.onnx) to measure, or update packages (.ekpkg, "
                                             "edgekit package): sent as they are, restored and sha256-checked on "
                                             "the device.", argument=True, metavar="ARTIFACT...")
    devices: tuple[Any, ...] = option(("local",), flag="--device", short="-d",
                                      help="local, ssh://user@host[:port], adb://SERIAL or a profile name "
                                           "(repeatable; devices run in parallel).")
    threads: int | None = option(None, help="Interpreter threads (default: the profile's).")
    runs: int = option(50, help="Timed runs.")
    warmup: int = option(5, help="Warm-up runs.")
    max_seconds: float = option(150.0, help="Time cap per phase.")
    delegate: str | None = option(None, help="auto (XNNPACK), xnnpack, none, or PATH.so (external delegate).")
    input: str | None = option(None, help=".npy/.npz input instead of random data.")
    seed: int = option(0, help="Seed of the random input.")
    timeout: float | None = option(None, help="Seconds per run (default: 2 x max-seconds + 120).")
    history: str | None = option(None, help="JSON-lines history to append the results to (default: not recorded; "
                                            "the CLI records to $EDGEKIT_BENCH_HISTORY or "
                                            "~/.cache/edgekit/bench_history.jsonl).")
    runtime: str | None = option(None, help="Interpreter on the device: auto, ai-edge-litert, tflite-runtime, "
                                            "onnxruntime (default: the profile's runtime:, else the first "
                                            "importable).")
    verify: bool = option(False, help="Replay the artifact's verification inputs on the device and compare with the "
                                      "host reference.")
    verify_data: str | None = option(None, help="A .verify.npz to use instead of the one the manifest names (with "
                                                "--verify).")
    profile_ops: bool = option(False, help="Per-op times where the runtime exposes them, joined with the model's "
                                           "mult-adds.")
    base: str | None = option(None, help="The deployed artifact that delta packages (.ekpkg made with --base) "
                                         "restore against on the device (copied there unless it already is).")


@spec
class BenchSpec(ConnectSpec, BenchOptions):
    """``edgekit.bench(artifacts, devices, ...)``: every artifact on every device, one result row each."""


@spec
class CompareSpec(ConnectSpec):
    """``edgekit.compare(artifacts, devices, ...)``: two artifacts interleaved on one device, or one artifact on two
    devices; the p50 time ratio with its 95% interval and a verdict."""

    artifacts: tuple[str, ...] = option(help="Two artifacts (one device), or one artifact (two devices).",
                                        argument=True, metavar="ARTIFACT...")
    devices: tuple[Any, ...] = option(("local",), flag="--device", short="-d",
                                      help="One device for two artifacts (run interleaved), or two devices for one "
                                           "artifact.")
    runs: int = option(50, help="Timed runs per artifact (or per device).")
    warmup: int = option(5, help="Warm-up runs.")
    rounds: int = option(10, help="A B / B A alternations (two artifacts); the ratio's interval comes from these "
                                  "paired rounds (at least 3).")
    threads: int | None = option(None, help="Interpreter threads (default: the profile's).")
    max_seconds: float = option(150.0, help="Time cap.")
    delegate: str | None = option(None, help="auto (XNNPACK), xnnpack, none, or PATH.so.")
    runtime: str | None = option(None, help="Interpreter on the device (default: the profile's runtime:).")
    seed: int = option(0, help="Seed of the random input.")
    timeout: float | None = option(None, help="Seconds (default: 2 x max-seconds + 120).")
