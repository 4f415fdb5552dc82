"""The competition package: everything that answers a test.csv offline, checked by its manifest."""
