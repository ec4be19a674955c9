"""The I/O shell of rtls: processes, brokers, network. The pure core lives in ``rtls/``."""
