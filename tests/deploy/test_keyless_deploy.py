"""`scripts/deploy.sh --auth entra` (keyless) and `--rotate-trigger-secret` against the stand-in `az`: one secret
left (the trigger's), the managed identity made, assigned and granted, the Confluent Cloud side printed, and a
rotation that keeps two valid secrets until the app has restarted on the new one."""

from __future__ import annotations

import re
from pathlib import Path

from settlement.runtime.config import SECRET_SETTINGS, load_settings, load_trigger_settings
from tests.deploy.harness import mutations

ENTRA = ("--auth", "entra", "--kafka-cluster-id", "lkc-abc12", "--registry-cluster-id", "lsrc-def34")
POOLS = ("--identity-pool-id", "pool-App1", "--trigger-identity-pool-id", "pool-Trg2")
SETTING = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*=")


def entra_secrets(tmp_path: Path, extra: str = "") -> tuple[str, str]:
    path = tmp_path / "keyless.secrets"
    path.write_text(f"KAFKA_BOOTSTRAP_SERVERS=pkc-123.westeurope.azure.confluent.cloud:9092\n{extra}")
    return "--secrets-file", str(path)


def dry_run_settings(out: str) -> dict[str, str]:
    """The app settings a --dry-run would set, from its printed `az functionapp config appsettings set` line (a
    value may hold spaces, as the repair schedule does: a word that is not NAME=... belongs to the value before)."""
    line = next(x for x in out.splitlines() if x.startswith("[dry-run] az functionapp config appsettings set"))
    words = line.split(" --settings ", 1)[1].removesuffix(" --output none").split(" ")
    settings: dict[str, str] = {}
    name = ""
    for word in words:
        if SETTING.match(word):
            name, _, value = word.partition("=")
            settings[name] = value
        else:
            settings[name] += " " + word
    return settings


def secrets_held(settings: dict[str, str]) -> set[str]:
    """Settings that hold a secret: those the app declares secret, and any Key Vault reference (the bootstrap
    servers aside: not a secret, kept in the vault as every deployment keeps them)."""
    return {
        name
        for name, value in settings.items()
        if name in SECRET_SETTINGS or (value.startswith("@Microsoft.KeyVault(") and name != "KAFKA_BOOTSTRAP_SERVERS")
    }


def test_a_keyless_deployment_holds_one_secret_and_the_app_accepts_its_settings(azure, tmp_path: Path) -> None:
    keyed = azure("--dry-run")
    assert keyed.code == 0, keyed.out
    assert secrets_held(dry_run_settings(keyed.out)) == {
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_PRODUCER_CONFIG",
        "SCHEMA_REGISTRY_CONFIG",
    }
    r = azure(*entra_secrets(tmp_path), *ENTRA, *POOLS, "--dry-run")
    assert r.code == 0, r.out
    settings = dry_run_settings(r.out)
    assert secrets_held(settings) == {"KAFKA_TRIGGER_OAUTH_CLIENT_SECRET"}
    stored = set(re.findall(r"\[dry-run\] az keyvault secret set --vault-name \S+ --name (\S+)", r.out))
    assert stored == {"kafka-bootstrap-servers", "kafka-trigger-oauth-client-secret"}
    assert "AzureWebJobsStorage" not in settings and settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert "appsettings delete" in r.out and "--setting-names AzureWebJobsStorage" in r.out
    assert settings["KAFKA_TRIGGER_OAUTH_EXTENSIONS"] == "logicalCluster=lkc-abc12,identityPoolId=pool-Trg2"
    # What the app reads of them at indexing and at its first invocation passes its own checks (the platform
    # resolves the references first).
    env = {k: ("resolved" if v.startswith("@Microsoft.KeyVault(") else v) for k, v in settings.items()}
    env["KAFKA_BOOTSTRAP_SERVERS"] = "pkc-123.westeurope.azure.confluent.cloud:9092"
    trigger = load_trigger_settings(env)
    assert trigger.authentication_mode == "OAuthBearer"
    app = load_settings(env)
    assert (app.kafka_entra, app.registry_entra, app.security_protocol) == (True, True, "SASL_SSL")
    assert app.entra is not None and app.entra.kafka_extensions["identityPoolId"] == "pool-App1"
    for step in ("az identity create", "az ad app create", "az ad sp create", "az ad app credential reset"):
        assert f"[dry-run] {step}" in r.out, step
    assert "--identities <identity-id>" in r.out
    assert "confluent iam pool create" in r.out and "Transactional-Id:trade-settlement.settled. --prefix" in r.out


def test_a_keyless_first_run_stops_for_the_pools_then_sets_up_and_a_rerun_changes_nothing(
    azure, tmp_path: Path
) -> None:
    secrets = entra_secrets(tmp_path)
    first = azure(*secrets, *ENTRA)
    assert first.code == 0, first.out
    done = mutations(first.calls)
    assert "functionapp config appsettings set" not in done and not any(m.startswith("func ") for m in done)
    assert "stopped before the app settings: the identity pools do not exist yet" in first.out
    principal = next(v for v in azure.state()["resources"].values() if v["kind"] == "identity")["principalId"]
    assert f'claims.sub == "{principal}"' in first.out
    second = azure(*secrets, *ENTRA, *POOLS)
    assert second.code == 0, second.out
    app = next(v for v in azure.state()["resources"].values() if v["kind"] == "app")
    settings = {s["name"]: s["value"] for s in app["settings"]}
    assert "AzureWebJobsStorage" not in settings and settings["KAFKA_AUTH"] == "entra"
    assert app["keyVaultReferenceIdentity"].endswith("/userAssignedIdentities/" + app["name"].replace("func", "id"))
    roles = {(r["role"], r["scope"].rsplit("/", 1)[-1]) for r in azure.state()["roles"] if r["principal"] == principal}
    storage = next(v for v in azure.state()["resources"].values() if v["kind"] == "storage")["name"]
    vault = next(v for v in azure.state()["resources"].values() if v["kind"] == "vault")["name"]
    assert roles == {
        ("Key Vault Secrets User", vault),
        ("Storage Blob Data Owner", storage),
        ("Storage Queue Data Contributor", storage),
        ("Storage Table Data Contributor", storage),
    }
    graph = azure.state()["graph"]
    (password,) = [c["password"] for c in next(iter(graph["credentials"].values()))]
    assert azure.state()["secrets"]["kafka-trigger-oauth-client-secret"] == password
    for run in (first, second):
        assert password not in run.out and all(password not in arg for call in run.calls for arg in call)
    again = azure(*secrets, *ENTRA, *POOLS)
    assert again.code == 0 and mutations(again.calls) == [], mutations(again.calls)


def test_rotation_adds_a_secret_restarts_the_app_on_it_then_removes_the_old(azure, tmp_path: Path) -> None:
    secrets = entra_secrets(tmp_path)
    assert azure(*secrets, *ENTRA, *POOLS).code == 0
    ((app_id, held),) = azure.state()["graph"]["credentials"].items()
    old = held[0]
    r = azure("--auth", "entra", "--rotate-trigger-secret", "--rotation-overlap", "0")
    assert r.code == 0, r.out
    assert mutations(r.calls) == [
        "ad app credential reset",
        "keyvault secret set",
        "functionapp restart",
        "ad app credential delete",
    ]
    reset = next(c for c in r.calls if c[:4] == ["ad", "app", "credential", "reset"])
    assert "--append" in reset  # the old secret stays valid until the app runs on the new one
    deleted = next(c for c in r.calls if c[:4] == ["ad", "app", "credential", "delete"])
    assert deleted[deleted.index("--key-id") + 1] == old["keyId"]
    (new,) = azure.state()["graph"]["credentials"][app_id]
    assert new["keyId"] != old["keyId"]
    assert azure.state()["secrets"]["kafka-trigger-oauth-client-secret"] == new["password"]
    assert new["password"] not in r.out and old["password"] not in r.out


def test_keyless_refuses_a_key_in_the_secrets_file_naming_it_not_its_value(azure, tmp_path: Path) -> None:
    r = azure(*entra_secrets(tmp_path, "KAFKA_SASL_PASSWORD=leftover-Zz91\n"), *ENTRA, *POOLS, "--dry-run")
    assert r.code != 0
    assert "KAFKA_SASL_PASSWORD is not used with --auth entra" in r.out and "leftover-Zz91" not in r.out
    half = azure(*entra_secrets(tmp_path), *ENTRA, "--identity-pool-id", "pool-App1", "--dry-run")
    assert half.code != 0 and "--identity-pool-id needs --trigger-identity-pool-id too" in half.out
    no_cluster = azure(*entra_secrets(tmp_path), "--auth", "entra", "--dry-run")
    assert no_cluster.code != 0 and "--kafka-cluster-id" in no_cluster.out
