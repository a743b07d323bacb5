"""Studies: grids of training runs (``sweep``), paired comparisons over patients (``compare``),
the built-in demo (``demo``) and the figures they draw (``figures``)."""
