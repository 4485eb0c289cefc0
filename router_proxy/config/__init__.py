"""The YAML contract (schema.py), its loading (load.py) and its errors (errors.py)."""
