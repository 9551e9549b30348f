"""Incidents: numbering, opening, linking alerts and error groups, the timeline."""
