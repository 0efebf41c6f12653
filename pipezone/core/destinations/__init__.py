"""Where lake tables go: the destination contract export adapters implement."""
