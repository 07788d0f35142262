"""VAEs at run time: the engine (encode/decode), precision choice, exact tiling, peak memory, the RAM cache, in-place swaps."""
