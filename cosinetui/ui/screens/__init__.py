"""Modal screens: the schedule form and the confirmations."""
