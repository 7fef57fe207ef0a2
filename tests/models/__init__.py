"""Tests of d3dp_ktp.models beyond tests/test_models.py."""
