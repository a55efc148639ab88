"""Console widgets: machine cards and the event log."""
