"""A stand-in `az` (and `func`) for testing scripts/deploy.sh: records argv, keeps resources in a JSON state
file, and answers the queries deploy.sh makes the way the Azure CLI does (JSON/TSV, exit code 3 for a
resource that does not exist). Environment: FAKE_AZ_STATE, FAKE_AZ_LOG, FAKE_AZ_FAIL (a substring of the
command line that makes the call fail like az does), FAKE_AZ_LOGIN (`user` or `servicePrincipal`).

Rules of the real Azure CLI 2.91.0 it enforces (each checked against that CLI's own argument validation):
`az resource list` refuses `--tag` together with `--resource-group`; `az functionapp plan create|update`
accept `--max-burst` 0..20 only; `az ad signed-in-user show` fails under a service-principal login;
`--assignee` is resolved through Microsoft Graph, which does not yet see a just-created managed identity.
Platform behaviour it models: a role assignment reaches the Key Vault data plane a few calls after it is made;
Key Vault references resolve when settings change or the app restarts after that; `az group delete`
soft-deletes the group's vaults, whose names stay taken until recovered or purged; az prints WARNING lines on
stderr."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000aa"
USER_ID = "11111111-2222-3333-4444-555555555555"
SP_ID = "99999999-8888-7777-6666-555555555555"
PROPAGATION_CALLS = 3  # az calls after a role assignment before the vault's data plane honours it


def opt(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


def multi(argv: list[str], name: str) -> list[str]:
    """Values after `name` up to the next option."""
    if name not in argv:
        return []
    out = []
    for a in argv[argv.index(name) + 1 :]:
        if a.startswith("--"):
            break
        out.append(a)
    return out


def tags(argv: list[str]) -> dict[str, str]:
    return dict(t.split("=", 1) for t in multi(argv, "--tags"))


def resolve(obj: Any, query: str | None) -> Any:
    if not query:
        return obj
    if query == "length(@)":
        return len(obj)
    m = re.fullmatch(r"length\(\[\?principalId=='([^']*)'\]\)", query)
    if m:
        return len([r for r in obj if r["principal"] == m.group(1)])
    if query == "length(value[?properties.status!='Resolved'])":
        return len([r for r in obj["value"] if r["properties"]["status"] != "Resolved"])
    if query == "[].[id,resourceGroup]":
        return [[r["id"], r["group"].upper()] for r in obj]  # Azure may return the group in another case
    if query == "[].[name,value]":
        return [[s["name"], s["value"]] for s in obj]
    if query == "[].id":
        return [r["id"] for r in obj]
    for part in query.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def emit(value: Any, argv: list[str]) -> None:
    if opt(argv, "--output") == "none" or opt(argv, "-o") == "none":
        return
    if opt(argv, "-o") == "tsv" or opt(argv, "--output") == "tsv":
        if value is None:
            return
        if isinstance(value, list):
            for row in value:
                print("\t".join(map(str, row)) if isinstance(row, list) else row)
        else:
            print(str(value).lower() if isinstance(value, bool) else value)
        return
    print(json.dumps(value))


def not_found(what: str) -> int:
    print(f"ERROR: (ResourceNotFound) The Resource '{what}' was not found.", file=sys.stderr)
    return 3


def main(argv: list[str]) -> int:
    state_path = Path(os.environ["FAKE_AZ_STATE"])
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    res: dict[str, dict[str, Any]] = state.setdefault("resources", {})
    with open(os.environ["FAKE_AZ_LOG"], "a") as log:
        log.write(json.dumps(argv) + "\n")
    state["calls"] = state.get("calls", 0) + 1
    login = os.environ.get("FAKE_AZ_LOGIN", "user")
    fail = os.environ.get("FAKE_AZ_FAIL")
    if fail and fail in " ".join(argv):
        print("ERROR: (AuthorizationFailed) The client does not have authorization to perform action.", file=sys.stderr)
        return 1
    if argv and argv[0] == "func":
        print("Remote build succeeded!")
        return 0

    cmd = []
    for a in argv:
        if a.startswith("-"):
            break
        cmd.append(a)
    verb = " ".join(cmd)
    name, group, query = opt(argv, "--name"), opt(argv, "--resource-group"), opt(argv, "--query")

    def save() -> None:
        state_path.write_text(json.dumps(state))

    save()  # the call counter

    def propagated(principal: str) -> bool:
        return any(
            r["principal"] == principal
            and r["role"] == "Key Vault Secrets User"
            and state["calls"] - r["at"] >= PROPAGATION_CALLS
            for r in state.get("roles", [])
        )

    def create(kind: str, key: str, **extra: Any) -> int:
        res[f"{kind}:{key}"] = {
            "id": f"/subscriptions/{SUBSCRIPTION}/{kind}/{key}",
            "name": key,
            "kind": kind,
            "group": group or key,
            "tags": tags(argv),
            **extra,
        }
        save()
        emit(res[f"{kind}:{key}"], argv)
        return 0

    def show(kind: str, key: str | None) -> int:
        r = res.get(f"{kind}:{key}")
        if r is None:
            return not_found(f"{kind}/{key}")
        emit(resolve(r, query), argv)
        return 0

    simple = {
        "group": "group",
        "storage account": "storage",
        "keyvault": "vault",
        "functionapp plan": "plan",
        "functionapp": "app",
    }
    for prefix, kind in simple.items():
        if verb == f"{prefix} show":
            return show(kind, name)
    if verb == "account show":
        emit(resolve({"id": SUBSCRIPTION, "user": {"type": login, "name": "someone"}}, query), argv)
        return 0
    if verb == "account get-access-token":
        claims = {"aud": "https://management.core.windows.net/", "oid": SP_ID if login != "user" else USER_ID}
        body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
        emit(resolve({"accessToken": f"eyJhbGciOiJub25lIn0.{body}.sig"}, query), argv)
        return 0
    if verb == "keyvault create" and name in state.get("deleted_vaults", {}):
        print(
            f"ERROR: (VaultAlreadyExists) The vault name '{name}' is already in use. Vault names are globally unique "
            "and a soft-deleted vault holds its name until it is recovered or purged.",
            file=sys.stderr,
        )
        return 1
    if verb == "keyvault show-deleted":
        if name not in state.get("deleted_vaults", {}):
            return not_found(f"deletedVaults/{name}")
        emit(resolve(state["deleted_vaults"][name], query), argv)
        return 0
    if verb == "keyvault recover":
        res[f"vault:{name}"] = state["deleted_vaults"].pop(name or "")
        save()
        return 0
    if verb in ("functionapp plan create", "functionapp plan update"):
        burst = int(opt(argv, "--max-burst") or 1)
        if not 0 <= burst <= 20:
            print("ERROR: --max-burst must be between 0 and 20", file=sys.stderr)
            return 2
    if verb == "group create":
        return create("group", name or "")
    if verb == "storage account create":
        return create("storage", name or "")
    if verb == "keyvault create":
        return create("vault", name or "", rbac=opt(argv, "--enable-rbac-authorization"))
    if verb == "functionapp plan create":
        return create(
            "plan", name or "", sku=opt(argv, "--sku"), maximumElasticWorkerCount=int(opt(argv, "--max-burst") or 1)
        )
    if verb == "functionapp plan update":
        res[f"plan:{name}"]["maximumElasticWorkerCount"] = int(opt(argv, "--max-burst") or 1)
        save()
        return 0
    if verb == "functionapp create":
        identity = f"principal-of-{name}" if "--assign-identity" in argv else ""
        return create("app", name or "", state="Running", principalId=identity, settings=[], scaleMonitoring=False)
    if verb == "functionapp identity show":
        return show("app", name)
    if verb == "functionapp identity assign":
        print("WARNING: This command is in preview and under development.", file=sys.stderr)
        res[f"app:{name}"]["principalId"] = f"principal-of-{name}"
        save()
        emit(resolve({"principalId": f"principal-of-{name}", "type": "SystemAssigned"}, query), argv)
        return 0
    if verb == "ad signed-in-user show":
        if login != "user":
            print("ERROR: /me request is only valid with delegated authentication flow.", file=sys.stderr)
            return 1
        emit(resolve({"id": USER_ID}, query), argv)
        return 0
    if verb == "role assignment list":
        assignee = opt(argv, "--assignee")
        if assignee and assignee.startswith("principal-of-"):
            print(f"ERROR: Cannot find user or service principal in graph database for '{assignee}'.", file=sys.stderr)
            return 1
        found = [
            r
            for r in state.get("roles", [])
            if (assignee is None or r["principal"] == assignee)
            and r["role"] == opt(argv, "--role")
            and r["scope"] == opt(argv, "--scope")
        ]
        emit(resolve(found, query), argv)
        return 0
    if verb == "role assignment create":
        state.setdefault("roles", []).append(
            {
                "principal": opt(argv, "--assignee-object-id"),
                "type": opt(argv, "--assignee-principal-type"),
                "role": opt(argv, "--role"),
                "scope": opt(argv, "--scope"),
                "at": state["calls"],
            }
        )
        save()
        return 0
    if verb == "functionapp restart":
        app = res[f"app:{name}"]
        app["refsResolved"] = propagated(app["principalId"])
        app["restarts"] = app.get("restarts", 0) + 1
        save()
        return 0
    if verb == "rest":
        url = opt(argv, "--url") or ""
        app = next(
            r for r in res.values() if r["kind"] == "app" and url.startswith(f"https://management.azure.com{r['id']}/")
        )
        refs = [
            {
                "name": s["name"],
                "properties": {"status": "Resolved" if app.get("refsResolved") else "AccessToKeyVaultDenied"},
            }
            for s in app["settings"]
            if s["value"].startswith("@Microsoft.KeyVault(")
        ]
        emit(resolve({"value": refs}, query), argv)
        return 0
    if verb == "keyvault secret list":
        return 0
    if verb == "keyvault secret show":
        secret = state.get("secrets", {}).get(name or "")
        if secret is None:
            return not_found(f"secret/{name}")
        emit(resolve({"value": secret}, query), argv)
        return 0
    if verb == "keyvault secret set":
        state.setdefault("secrets", {})[name or ""] = Path(opt(argv, "--file") or "").read_text()
        save()
        return 0
    if verb == "functionapp config appsettings list":
        emit(resolve(res[f"app:{name}"]["settings"], query), argv)
        return 0
    if verb == "functionapp config appsettings set":
        current = {s["name"]: s for s in res[f"app:{name}"]["settings"]}
        for item in multi(argv, "--settings"):
            key, value = item.split("=", 1)
            current[key] = {"name": key, "value": value, "slotSetting": False}
        res[f"app:{name}"]["settings"] = list(current.values())
        res[f"app:{name}"]["refsResolved"] = propagated(res[f"app:{name}"]["principalId"])
        save()
        return 0
    if verb == "resource show":
        app = res[f"app:{(name or '').split('/')[0]}"]
        emit(resolve({"properties": {"functionsRuntimeScaleMonitoringEnabled": app["scaleMonitoring"]}}, query), argv)
        return 0
    if verb == "resource update":
        res[f"app:{(name or '').split('/')[0]}"]["scaleMonitoring"] = True
        save()
        return 0
    if verb == "resource tag":
        target = next(r for r in res.values() if r["id"] == opt(argv, "--ids"))
        target["tags"].update(tags(argv))
        save()
        return 0
    if verb == "resource list":
        if "--tag" in argv and group:
            print("ERROR: you cannot use '--tag' with '--resource-group'", file=sys.stderr)
            return 2
        key, value = (opt(argv, "--tag") or "=").split("=", 1)
        found = [r for r in res.values() if r["kind"] != "group" and r["tags"].get(key) == value]
        emit(resolve(found, query), argv)
        return 0
    if verb == "resource delete":
        for rid in multi(argv, "--ids"):
            for k in [k for k, r in res.items() if r["id"] == rid]:
                del res[k]
        save()
        return 0
    if verb == "group delete":
        for k in [k for k, r in res.items() if r["group"] == name or k == f"group:{name}"]:
            if res[k]["kind"] == "vault":
                state.setdefault("deleted_vaults", {})[res[k]["name"]] = res[k]
            del res[k]
        state["roles"] = []  # assignments at scopes inside the group go with it
        save()
        return 0
    print(f"ERROR: fake az does not know: {verb}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))  # the `func` wrapper passes "func" as the first argument
