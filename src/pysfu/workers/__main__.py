"""``python -m pysfu.workers --fd N``: a worker process of a WorkerPool."""

from .worker import main

main()
