"""Small shared utilities with no dependency on the networks."""
