"""spectacles.simulator."""
