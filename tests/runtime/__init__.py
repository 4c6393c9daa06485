"""Tests of sagac's runtime."""
