#!/bin/sh
# Record a chat's ICWS messages as received, then study them offline: how many lines each member wrote.
capture="${2:-chat.ndjson}"
icwschat watch "${1:-1001}" --raw > "$capture"
icwschat replay "$capture" --json |
  jq -r 'select(.event=="message") | .member.displayName' | sort | uniq -c | sort -k1,1nr -k2
