"""The huimin command line and the orchestration of a run."""
