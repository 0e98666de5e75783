#!/bin/sh
# Only the typing indicators, as compact JSON; -a writes every non-ASCII character (bidi overrides
# included) as \uXXXX, so names are shown safely and decode to the same text.
icwschat watch "${1:-1001}" --json | jq -ac 'select(.event|startswith("typing"))'
