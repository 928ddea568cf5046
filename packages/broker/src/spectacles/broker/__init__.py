"""spectacles.broker."""
