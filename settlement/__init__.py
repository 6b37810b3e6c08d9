"""Trade settlement, in layers that only import downward (pyproject.toml `[tool.importlinter]` enforces it):

    runtime   settings, host limits, the composition root (root.py), the Azure adapters (function_app.py imports
              only this layer and holds the process's one `Root`)
    delivery  the processor, the planner, the producer, at-least-once and the exactly_once/ room (ledger, repair)
    serde     framing, columns, registry, decoder, encoder
    telemetry the instruments (one module, no imports of ours)
    core      pure decisions: errors, records, admission, rules, dead letters, plan, positions, liveness
    schemas   generated Protobuf modules

Each layer states its public names in its package's `__all__`; code outside `settlement/` imports only those. Nothing
depends on the Azure Functions host except `settlement.runtime.triggers`, and no module keeps state of its own (the
composition root holds the process's services). See docs/architecture.md.
"""
