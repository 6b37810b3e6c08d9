"""What the deploy tests share: the stand-in `az` and `func` on PATH (fake_az.py), a secrets file, a run of
scripts/deploy.sh that returns its output and every argv it gave az, and the checks most tests make."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FAKE = Path(__file__).with_name("fake_az.py")
PASSWORD = "sasl-Qw3rTy9Zx7Vb2Nm5"
PRODUCER_JSON = '{"linger.ms": 10, "sasl.password": "pj-Lk8Jh6Gf4Ds2"}'
REGISTRY_JSON = '{"basic.auth.user.info": "SRKEY:sr-Po9Iu7Yt5Re3"}'
SECRETS = (PASSWORD, "pj-Lk8Jh6Gf4Ds2", "sr-Po9Iu7Yt5Re3")
MUTATING = ("create", "set", "update", "delete", "assign", "tag", "restart", "recover", "reset")
# The monitoring a first run creates: the workspace and the action group with the CLI's core commands, then one
# ARM deployment for Application Insights, the four alert rules and the workbook.
MONITORING = ["monitor log-analytics workspace create", "monitor action-group create", "deployment group create"]


@dataclass
class Result:
    code: int
    out: str
    calls: list[list[str]]


def make_azure(tmp_path: Path) -> Callable[..., Result]:
    """A function that runs deploy.sh (always with the secrets file and a registry URL) against the stand-ins;
    `.state()` reads the stand-in's resources, `.env` is the environment it runs with."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("az", "func"):
        exe = bin_dir / tool
        exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE}" {"" if tool == "az" else "func "}"$@"\n')
        exe.chmod(0o755)
    secrets = tmp_path / "deploy.secrets"
    secrets.write_text(
        "# filled by the user\n"
        "KAFKA_BOOTSTRAP_SERVERS=pkc-123.westeurope.azure.confluent.cloud:9092\n"
        "KAFKA_SASL_USERNAME=APIKEY123\n"
        f"KAFKA_SASL_PASSWORD={PASSWORD}\n"
        f"KAFKA_PRODUCER_CONFIG={PRODUCER_JSON}\n"
        f"SCHEMA_REGISTRY_CONFIG={REGISTRY_JSON}\n"
    )
    base_env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_AZ_STATE": str(tmp_path / "state.json"),
        "FAKE_AZ_LOG": str(tmp_path / "calls.log"),
        "DEPLOY_POLL_SECONDS": "0",
    }

    def run(*args: str, fail: str | None = None, env: dict[str, str] | None = None) -> Result:
        log = tmp_path / "calls.log"
        log.write_text("")
        run_env = {**base_env, **(env or {})}
        if fail:
            run_env["FAKE_AZ_FAIL"] = fail
        proc = subprocess.run(
            [
                "bash",
                str(ROOT / "scripts" / "deploy.sh"),
                "--secrets-file",
                str(secrets),
                "--schema-registry-url",
                "https://psrc-1.westeurope.azure.confluent.cloud",
                *args,
            ],
            env=run_env,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()]
        return Result(proc.returncode, proc.stdout + proc.stderr, calls)

    run.state = lambda: json.loads((tmp_path / "state.json").read_text())  # type: ignore[attr-defined]
    run.env = base_env  # type: ignore[attr-defined]
    return run


def mutations(calls: list[list[str]]) -> list[str]:
    out = []
    for c in calls:
        words = [w for w in c if not w.startswith("-")][:5]
        if c[0] == "func" or any(w in MUTATING for w in words):
            verb = []
            for w in c:
                if w.startswith("-"):
                    break
                verb.append(w)
            out.append(" ".join(verb[: 4 if c[0] == "func" else 5]))
    return out


def assert_no_secret(result: Result) -> None:
    for secret in SECRETS:
        assert secret not in result.out
        assert all(secret not in arg for call in result.calls for arg in call)
