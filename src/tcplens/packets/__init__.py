"""Packets: capture readers, decoders and the per-connection state tracker."""
