"""Command-test helper: print text that is not JSON."""

print("shipped 3 parcels")
