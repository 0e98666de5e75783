#!/bin/sh
# Only the typing indicators, as compact JSON.
icwschat watch "${1:-1001}" --json | jq -c 'select(.event|startswith("typing"))'
