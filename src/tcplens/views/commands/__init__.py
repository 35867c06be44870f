"""One module per CLI verb, loaded lazily by ``tcplens.views.cli``."""
