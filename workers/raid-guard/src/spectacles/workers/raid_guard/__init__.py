"""spectacles.workers.raid_guard."""
