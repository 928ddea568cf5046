"""spectacles.gateway."""
