#!/bin/sh
# Every chat line as "Name: text", for a log or a grep.
icwschat watch "${1:-1001}" --json | jq -r 'select(.event=="message") | "\(.member.displayName): \(.text)"'
