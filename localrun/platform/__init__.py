"""The emulated platform: what runs our function locally as Azure does (the worker's indexing, the host's data
shapes, the Kafka extension's listener and retry/store model, instance processes, the scale controller, timer
triggers), each modelled from its source and named with the version modelled. Only what Azure does: what an
experiment measures or breaks reaches it through the seam it exposes (`hooks`), never through these modules. It
imports the function app and settlement's runtime; it never imports the experiments that drive it."""
