"""Tests of sagac's compiler."""
