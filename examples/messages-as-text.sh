#!/bin/sh
# Every chat line as "Name: text", for a log or a grep. Chat text comes from the public internet: inert
# replaces the control and bidi characters a terminal would act on (escape sequences, title changes,
# reordering) with "?", so the output is safe to show; leave it out to keep the text exact in a file.
icwschat watch "${1:-1001}" --json | jq -r '
  def inert: gsub("[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]"; "?");
  select(.event=="message") | "\(.member.displayName | inert): \(.text | inert)"'
