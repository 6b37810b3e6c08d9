"""Trade settlement domain: rules, Schema Registry decoding and encoding, the static producer, batches, config.

Nothing in this package depends on the Azure Functions host except `settlement.triggers`, the adapter from
`azure.functions` types to `InputRecord`.
"""
