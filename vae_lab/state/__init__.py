"""Small JSON state files kept between runs: `jsonfile` (the one validated, locked, atomic
implementation) and what uses it directly here (`preferences`: per-checkpoint VAEs). The hash
cache (identity) and the precision memory (runtime) use `jsonfile` too."""
