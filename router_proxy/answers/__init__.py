"""Answer extraction and comparison, shared by offline training and the gateway."""
