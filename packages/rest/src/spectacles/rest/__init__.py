"""spectacles.rest."""
