"""riverbed's benchmarks: run each from the project root as ``python -m bench.<name>``.

``bench.harness`` holds what they share (the broker, the run's topics, starting and
stopping a worker); results go to ``bench/results/``. Not part of the installed package.
"""
