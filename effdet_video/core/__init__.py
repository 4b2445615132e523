"""The bottom layer: the vocabulary that every other folder shares (the frame record and its letterbox,
the run's stop event and polling interval, a stage's clock, a live run's latency record). It imports
nothing else of the package, so that stages, engine and pipeline can all use it while each imports only
the layers below it (see tests/test_layers.py)."""
