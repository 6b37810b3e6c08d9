"""The settlement core: pure decisions with no I/O (no client, no azure.functions; the clock only through `Deadline`).

Errors and poison kinds, the record shapes, admission, the rules, dead-letter building, the batch plan, the
exactly-once position decisions, liveness and the NCRONTAB schedule. Everything above may import it; it imports
nothing of ours but `settlement.schemas` (generated), so each decision is table-tested without a broker.
"""
