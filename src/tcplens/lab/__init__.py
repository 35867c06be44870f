"""Lab: scenarios on real sockets that check kernel, model and capture agree."""
