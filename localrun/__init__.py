"""Local tooling, never deployed (see .funcignore) and never imported by the function app: `platform/` (the
emulated Functions host, Kafka extension and scale controller) below `experiments/` (the generator, the main
job, the fault tables) that use it."""
