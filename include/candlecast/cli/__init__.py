"""The ``candlecast`` command line (Typer, :mod:`.app`), with the demo (:mod:`.demo`) and the
embedded laptop mode (:mod:`.embedded`). The top layer: it may import everything below it."""
