"""The test suite; `tests.support` holds the helpers its modules share."""
