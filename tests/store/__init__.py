"""The store contract suite: the same behaviour tests for every store."""
