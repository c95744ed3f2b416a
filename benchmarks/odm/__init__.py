"""The MongoDB ODM Performance Benchmark (the drivers' ``odm-benchmarking.md``) on astro_db.

``python benchmarks/odm_bench.py``: flat and nested models, small and large, each task scored in
MB/s (the task's dataset size over the median wall time of an iteration), for raw PyMongo,
astro_db (defaults, and hooks off) and MongoEngine in one run. ``data`` loads the
specification's documents (or generates documents of their shapes and sizes), ``models``
declares each side's models, ``tasks`` the spec's tasks as harness operations, ``score`` the
percentiles, MB/s and the table.
"""
