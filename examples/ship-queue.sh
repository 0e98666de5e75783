#!/bin/sh
# Follow every chat of a queue, now and later, and write one compact JSON record per event for the log
# pipeline you already run to read from standard input or a file (Vector's stdin or file source, Fluent
# Bit's tail input, a Kafka console producer). Ctrl-C (or SIGTERM from a service manager) removes every
# subscription on the way out. -a writes non-ASCII as \uXXXX: the records are plain ASCII, text exact.
#   examples/ship-queue.sh workgroup:Support >> /var/log/icwschat/support.ndjson
queue="${1:?usage: ship-queue.sh QUEUE (user:NAME, workgroup:NAME, station:NAME or system:NAME)}"
icwschat watch --queue "$queue" --json | jq -ac --unbuffered --arg queue "$queue" '{
  "@timestamp": .at, source: "icwschat", queue: $queue, chat: .interactionId, event: .event,
  who: .member.displayName, role: .member.type, text: .text, said_at: .timestamp,
  state: .attributes.Eic_State, agent: .attributes.Eic_UserName
} | with_entries(select(.value != null))'
