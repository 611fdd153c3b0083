"""The model zoo (placeholder until the zoo lands)."""
