"""`az deployment group create` for the stand-in az: the Azure CLI's own parameter handling (read from Azure CLI
2.91.0's `resource/custom.py`: `_try_parse_key_value_object`, `_get_missing_parameters`) and the part of Azure
Resource Manager's template validation the monitoring template needs (parameter types, `minValue`/`maxValue`,
`allowedValues`, parameters without a default must be given), then the resources it declares, with the few
template expressions the monitoring template uses for names, conditions and tags (`[parameters('x')]`,
`[empty(parameters('x'))]`). Anything else in a name, a condition or the tags is refused, so a template that
grew an expression this model does not know fails here instead of passing untested."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

PARAMETER = re.compile(r"^\[parameters\('([A-Za-z0-9_]+)'\)\]$")
EMPTY = re.compile(r"^\[empty\(parameters\('([A-Za-z0-9_]+)'\)\)\]$")


class DeploymentError(Exception):
    """What the CLI or ARM answers, and the exit code the CLI gives it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def parameters(template: dict[str, Any], items: list[str], no_prompt: bool) -> dict[str, Any]:
    """The deployment's parameter values from `--parameters KEY=VALUE ...`, as the CLI and then ARM take them."""
    declared: dict[str, Any] = template.get("parameters", {})
    given: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise DeploymentError(f"fake az: --parameters {item!r} is not KEY=VALUE (the model knows no other form)")
        if key not in declared:
            raise DeploymentError(
                f"unrecognized template parameter '{key}'. Allowed parameters: {', '.join(sorted(declared))}"
            )
        kind = declared[key]["type"].lower()
        if kind in ("object", "array", "secureobject"):
            try:
                given[key] = json.loads(value)
            except ValueError as exc:
                raise DeploymentError(f"Failed to parse JSON: {value[:40]}... ({exc})") from exc
        elif kind == "int":
            try:
                given[key] = int(value)
            except ValueError as exc:
                raise DeploymentError(f"invalid literal for int() with base 10: '{value}'") from exc
        elif kind == "bool":
            given[key] = value.lower() == "true"
        else:
            given[key] = value
    missing = sorted(k for k, d in declared.items() if k not in given and "defaultValue" not in d)
    if missing and not no_prompt:
        raise DeploymentError(f"Missing input parameters: {', '.join(missing)}")
    if missing:
        raise DeploymentError(
            "(InvalidTemplate) Deployment template validation failed: 'The value for the template parameter "
            f"'{missing[0]}' is not provided.'"
        )
    values = {k: given.get(k, d.get("defaultValue")) for k, d in declared.items()}
    for key, d in declared.items():
        value, kind = values[key], d["type"].lower()
        expected = {"string": str, "securestring": str, "int": int, "bool": bool, "object": dict, "array": list}
        if kind in expected and not isinstance(value, expected[kind]):
            raise DeploymentError(
                f"(InvalidTemplate) The provided value for the template parameter '{key}' is not valid."
            )
        if "allowedValues" in d and value not in d["allowedValues"]:
            raise DeploymentError(f"(InvalidTemplate) The provided value for '{key}' is not allowed.")
        low, high = d.get("minValue"), d.get("maxValue")
        if kind == "int" and ((low is not None and value < low) or (high is not None and value > high)):
            raise DeploymentError(f"(InvalidTemplate) The provided value '{value}' for '{key}' is out of range.")
    return values


def _evaluate(expression: Any, values: dict[str, Any], what: str) -> Any:
    if not isinstance(expression, str) or not expression.startswith("["):
        return expression
    m = PARAMETER.match(expression)
    if m:
        return values[m.group(1)]
    m = EMPTY.match(expression)
    if m:
        return not values[m.group(1)]
    raise DeploymentError(f"fake az: the model cannot evaluate {what} {expression!r}", code=2)


def resources(template: dict[str, Any], values: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources the deployment creates or updates: type, name, tags and what the tests read back."""
    out = []
    for res in template["resources"]:
        if "condition" in res and not _evaluate(res["condition"], values, "the condition"):
            continue
        name = _evaluate(res["name"], values, "the name")
        made: dict[str, Any] = {
            "type": res["type"],
            "name": name,
            "tags": _evaluate(res.get("tags", {}), values, "the tags"),
        }
        if res["type"] == "Microsoft.Insights/components":
            key = uuid.uuid5(uuid.NAMESPACE_URL, f"component/{name}")
            made["properties"] = {
                "ConnectionString": f"InstrumentationKey={key};IngestionEndpoint="
                f"https://{values['location']}-0.in.applicationinsights.azure.com/",
                "WorkspaceResourceId": values.get("workspaceId", ""),
            }
        elif res["type"] == "Microsoft.Insights/scheduledQueryRules":
            made["properties"] = {"query": res["properties"]["criteria"]["allOf"][0]["query"]}
        elif res["type"] == "Microsoft.Insights/workbooks":
            made["properties"] = {"serializedData": json.dumps(values.get("workbookContent"))}
        out.append(made)
    return out
