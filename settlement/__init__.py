"""Trade settlement domain: rules, Schema Registry serde, the static producer, batch processing, config.

Nothing in this package depends on the Azure Functions host except `settlement.triggers`, the adapter from
`azure.functions` types to `InputRecord`.
"""
