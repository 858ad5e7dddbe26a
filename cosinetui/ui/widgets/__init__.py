"""Dashboard widgets, one module per screen area."""
