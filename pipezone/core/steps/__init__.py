"""The steps of a flow (extract, bronze, silver, gold, quality), what they share (runtime, context) and the
step runner that records each one in the state store."""
