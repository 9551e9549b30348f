"""People on call: contact methods, schedules with rotations, layers and overrides, routing."""
