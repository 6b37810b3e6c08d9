"""Trade settlement, in layers that only import downward (pyproject.toml `[tool.importlinter]` enforces it):

    runtime   settings, host limits, wiring, the Azure adapters (function_app.py imports only this)
    delivery  producer, processor, exactly-once ledger, repair
    serde     framing, columns, registry, decoder, encoder
    telemetry the instruments (one module, no imports of ours)
    core      pure decisions: errors, records, admission, rules, dead letters, plan, positions, liveness
    schemas   generated Protobuf modules

Nothing depends on the Azure Functions host except `settlement.runtime.triggers`. See docs/architecture.md.
"""
