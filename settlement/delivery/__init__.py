"""Kafka delivery: the producer, the processor (one batch at-least-once or through the exactly-once ledger),
the ledger's parts and the repair timer's run. It uses the core's decisions and serde's codecs; it reads no
setting and knows nothing of Azure (the runtime wires it).
"""
