"""One module per source of events over HTTP, each exporting its Starlette `routes`."""
