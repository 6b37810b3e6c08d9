"""The runtime: settings, the host's limits, the process-wide wiring, and the adapters from `azure.functions`
shapes (the Kafka trigger, the HTTP sink path, the repair timer) to the delivery layer. `function_app.py` imports
this layer only.
"""
