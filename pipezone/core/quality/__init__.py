"""Data quality on Great Expectations: checks as expectations, validation, row actions, Data Docs."""
