"""The Ray side of the driver: connect, size phases to the cluster, hold actors, turn results into events."""
