"""The experiments that drive the emulated platform (localrun/platform/): the trade generator, the main job and
its charts, the fault tables (one scenario module shared by the single-broker and the cluster tables), and the
ksqlDB schema the generator writes with."""
