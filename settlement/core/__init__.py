"""The settlement core: pure decisions with no I/O (no client, no clock of its own, no azure.functions).

Errors and poison kinds, the record shapes, admission, the rules, dead-letter building, the batch plan, the
exactly-once position decisions, liveness and the NCRONTAB schedule. Everything above may import it; it imports
nothing of ours but `settlement.schemas` (generated), so each decision is table-tested without a broker.
"""
