"""The watchdog: monitors, schedules, signals, checks, alerts and their delivery."""
