"""The record layer: the only code that knows a run directory (`run.Run`: its layout, its typed
manifest, the one writer of its records; `runlock`: one runner per run), what a record is
(`record`: typed reading, Status, Verdict), files and schema (`results`: atomic writes, run ids,
validated reading) and pooling a cell's processes into one record (`pool`)."""
