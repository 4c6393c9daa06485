"""Tests of sagac's batch."""
