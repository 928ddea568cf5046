"""REST proxy."""
