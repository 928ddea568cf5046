"""spectacles.workers.ping."""
