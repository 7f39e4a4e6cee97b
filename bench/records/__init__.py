"""The record layer: the only code that knows a run directory (`Run`: its layout, its typed
manifest, the one writer of its records, its lock) and what a record is."""
