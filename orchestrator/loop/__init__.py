"""The campaign loops: synchronous rounds, the asynchronous loop, its MD, queue and replicas."""
