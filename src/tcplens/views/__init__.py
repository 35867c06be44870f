"""Views render data; the CLI is the only place that parses arguments and picks exit codes."""
