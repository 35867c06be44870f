"""Parsers for saved netstat/ss/proc text of any OS."""
