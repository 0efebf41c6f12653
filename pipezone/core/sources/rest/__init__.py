"""The REST family: records read page by page from an HTTP JSON API (`type: rest` connections)."""
