"""Tests of sagac's durable."""
