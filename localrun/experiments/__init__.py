"""The experiments that drive the emulated platform (localrun/platform/): the trade generator, the main job and
its charts, the fault tables (one scenario module shared by the single-broker and the cluster tables, the function
faults), what they measure through the platform's hooks (the probes, the accounting of every input), and the
ksqlDB schema the generator writes with."""
