"""Telemetry services: every write on readings and telemetry state, and every Smartcar read."""
