"""Local tooling: trade generator, local Kafka-trigger host, the end-to-end main job. Never deployed
(see .funcignore) and never imported by the function app."""
