"""spectacles.models."""
