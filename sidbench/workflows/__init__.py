"""End-to-end workflows composed from the harness's layers (generate -> evaluate -> record)."""
