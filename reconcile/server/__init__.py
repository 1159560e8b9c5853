"""The HTTP face: ping URLs and the transactions API."""
