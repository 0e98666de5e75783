#!/bin/sh
# The transcript so far, as NDJSON events, into a file.
icwschat transcript "${1:-1001}" --json > "${2:-transcript.ndjson}"
