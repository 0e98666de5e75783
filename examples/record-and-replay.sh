#!/bin/sh
# Record a chat's ICWS messages as received, then study them offline: how many lines each member wrote.
# Names come from the public internet: inert makes the characters a terminal would act on harmless.
capture="${2:-chat.ndjson}"
icwschat watch "${1:-1001}" --raw > "$capture"
icwschat replay "$capture" --json |
  jq -r '
    def inert: gsub("[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"; "?");
    select(.event=="message") | .member.displayName | inert' |
  sort | uniq -c | sort -k1,1nr -k2
